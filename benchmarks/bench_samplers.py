"""Accuracy and wall time of the conditional DDPM's samplers against the number of steps.

    python -m benchmarks.bench_samplers                                   # the shipped grid (about an hour, 2 CPUs)
    python -m benchmarks.bench_samplers --models cfg-mnistm-small --runs dpm:10 --images_per_digit 20

Each run is the course-output command (`python -m pipelines.conditional_ddpm`, w = 2, seed 0, its default
batches: 100 images per pipeline call on the CPU, digits mixed) timed from start to the last PNG written, then
scored with the project classifier (`python -m pipelines.digit_classifier`). Results go to --output_json after
every run, and a rerun skips the runs already there, so an interrupted benchmark resumes. `--runs` takes
`scheduler:steps[:images_per_digit]`; the 400-step DDPM runs default to fewer images because one image costs
400 x 2 UNet forwards.

Both the wall time and the process's CPU time are recorded. On a shared machine the wall time depends on the other
jobs; with one torch thread (`OMP_NUM_THREADS=1`) the CPU time per 1000 images is the wall time the command would
take alone on one core, which is the figure the README's table reports.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from pipelines.command_line import resolve_pretrained
from pipelines.conditional_ddpm import course_output
from pipelines.digit_classifier import DigitClassifier
from pipelines.digit_classifier.score import score_folder

DEFAULT_MODELS = ["cfg-mnistm", "cfg-mnistm-small"]  # shipped names, or pipeline folders
DEFAULT_RUNS = ["dpm:6", "unipc:6", "dpm:10", "unipc:10", "dpm:20", "unipc:20", "ddim:50", "ddpm:400:20"]


def parse_run(text: str, images_per_digit: int) -> tuple[str, int, int]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts[1:]):
        raise ValueError(f"--runs entries are scheduler:steps[:images_per_digit], got {text!r}")
    return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else images_per_digit


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS)
    parser.add_argument("--images_per_digit", type=int, default=100)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--classifier", default="mnistm-digit-classifier", help="a folder or a shipped name")
    parser.add_argument("--output_json", default="docs/benchmarks/samplers_cpu.json")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    args.runs = [parse_run(run, args.images_per_digit) for run in args.runs]
    return args


def run_one(model: str, scheduler: str, steps: int, images_per_digit: int, args, classifier) -> dict:
    output_dir = Path(tempfile.mkdtemp(prefix="bench-samplers-")) / "digits"
    try:
        command = course_output.parse_args(
            [
                "--pretrained",
                model,
                "--output_dir",
                str(output_dir),
                "--scheduler",
                scheduler,
                "--num_inference_steps",
                str(steps),
                "--images_per_digit",
                str(images_per_digit),
                "--guidance",
                str(args.guidance),
                "--device",
                args.device,
            ]
        )
        start, cpu_start = time.perf_counter(), time.process_time()
        course_output.main(command)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        report = score_folder(classifier, output_dir)
    finally:
        shutil.rmtree(output_dir.parent, ignore_errors=True)
    return {
        "model": model,
        "scheduler": scheduler,
        "steps": steps,
        "images": report["total"],
        "seconds": round(seconds, 2),
        "seconds_per_1000": round(seconds * 1000 / report["total"], 1),
        "cpu_seconds_per_1000": round(cpu_seconds * 1000 / report["total"], 1),
        "torch_threads": torch.get_num_threads(),
        "accuracy": report["accuracy"],
        "per_digit": {d: r["accuracy"] for d, r in report["per_digit"].items()},
    }


def format_table(results: list[dict]) -> str:
    lines = [
        "| model | sampler | steps | images | seconds | s per 1000 | CPU s per 1000 | accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cpu = r.get("cpu_seconds_per_1000", float("nan"))
        lines.append(
            f"| {Path(r['model']).name} | {r['scheduler']} | {r['steps']} | {r['images']} "
            f"| {r['seconds']:.1f} | {r['seconds_per_1000']:.0f} | {cpu:.0f} | {r['accuracy']:.3f} |"
        )
    return "\n".join(lines)


def main(args) -> dict:
    output_json = Path(args.output_json)
    report = json.loads(output_json.read_text()) if output_json.is_file() else {"results": []}
    report.update(
        device=args.device
        if args.device != "cpu"
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} torch threads)",
        torch=torch.__version__,
        guidance=args.guidance,
    )
    # a model is known by its folder name, whether it was given as a shipped name or as a path
    done = {(Path(r["model"]).name, r["scheduler"], r["steps"], r["images"]) for r in report["results"]}
    classifier = DigitClassifier.from_pretrained(resolve_pretrained(args.classifier, "--classifier", hub=False))
    classifier = classifier.to(args.device)
    for scheduler, steps, per_digit in args.runs:
        for model in args.models:
            if (Path(model).name, scheduler, steps, per_digit * 10) in done:
                continue
            result = run_one(model, scheduler, steps, per_digit, args, classifier)
            report["results"].append(result)
            print(format_table([result]).splitlines()[-1], flush=True)
            output_json.parent.mkdir(parents=True, exist_ok=True)
            output_json.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report["results"]))
    return report


if __name__ == "__main__":
    main(parse_args())
