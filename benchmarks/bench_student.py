"""The distilled student beside its teacher: accuracy, Fréchet distance and CPU seconds per 1000 digits.

    python -m benchmarks.bench_student --real_data ../shared/data/mnistm          # the README's table
    python -m benchmarks.bench_student ... --write_card hub_cards/cfg-mnistm-fast  # and the student's card

Every run draws the same 1000 starting noises (100 of each digit, seed 0; the noise LCM adds between steps is
seeded too) and samples them in batches of `--batch_size` with `--threads` torch threads, one run after the
other in this one process, so the seconds are comparable side by side. Only the pipeline calls are timed
(after one warm-up call per run, which is not).

- accuracy: the project classifier (`mnistm-digit-classifier`) agrees with the asked digit;
- Fréchet distance: between the classifier's pooled features of the 1000 samples and of real MNIST-M validation
  images (all of them); the distance of 1000 real training images, the floor at this sample size, is in the
  record's `about`;
- within-digit spread: how varied the images of one digit are (real training images in the `about` too).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from adapters import decode_digits, load_digits
from adapters.folders import write_text_atomically
from pipelines.command_line import resolve_pretrained
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import NUM_DIGITS, ConditionalDDPMPipeline
from pipelines.conditional_ddpm.schedulers import make_scheduler
from pipelines.digit_classifier import DigitClassifier
from pipelines.seeds import step_noise_generator
from training.distill.card import MEASUREMENTS, markdown_table, write_student_card

DEFAULT_RUNS = ["teacher:dpm:6", "teacher:dpm:10", "student:lcm:1", "student:lcm:2", "student:lcm:4"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="cfg-mnistm")
    parser.add_argument("--student", default="cfg-mnistm-fast")
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="model:sampler:steps")
    parser.add_argument("--real_data", required=True, help="MNIST-M as an HF dataset folder (validation split)")
    parser.add_argument("--images_per_digit", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--classifier", default="mnistm-digit-classifier")
    parser.add_argument("--output_json", type=Path, default=Path("docs/benchmarks/student_cpu.json"))
    parser.add_argument("--write_card", type=Path, default=None, help="a student folder: its speed_quality.json")
    args = parser.parse_args(argv)
    for name in ("images_per_digit", "batch_size", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    args.runs = [parse_run(run) for run in args.runs]
    return args


def parse_run(text: str) -> tuple[str, str, int]:
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in ("teacher", "student") or not parts[2].isdigit():
        raise ValueError(f"--runs entries are (teacher|student):sampler:steps, got {text!r}")
    return parts[0], parts[1], int(parts[2])


@torch.no_grad()
def pooled_features(classifier: DigitClassifier, images: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """The classifier's globally pooled last-block features of images in [-1, 1]."""
    classifier.eval()
    chunks = [classifier.features(chunk).mean(dim=(2, 3)) for chunk in images.split(batch_size)]
    return torch.cat(chunks).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two feature sets (Heusel et al., 2017)."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def within_digit_spread(features: np.ndarray, labels: list[int]) -> float:
    """Mean over digits of the root mean squared distance of a digit's features to their mean: how varied the
    images of one digit are (a sampler that collapses onto few styles scores low)."""
    labels = np.asarray(labels)
    spreads = [np.sqrt(((f - f.mean(axis=0)) ** 2).sum(axis=1).mean()) for f in (features[labels == d] for d in
               np.unique(labels))]  # fmt: skip
    return float(np.mean(spreads))


def load_pipeline(kind: str, sampler: str, args) -> ConditionalDDPMPipeline:
    pipe = ConditionalDDPMPipeline.from_pretrained(resolve_pretrained(getattr(args, kind)))
    if sampler != "lcm":
        pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
    elif type(pipe.scheduler).__name__ != "LCMScheduler":
        raise ValueError(f"{getattr(args, kind)} has no LCMScheduler; lcm runs are for a distilled student")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, steps: int, labels: list[int], noise: torch.Tensor, args) -> tuple[torch.Tensor, float]:
    """All images in [-1, 1], and the seconds of the pipeline calls alone."""
    guidance = None if pipe.config.get("distilled_guidance") is not None else args.guidance
    pipe(digit=labels[:1], guidance=guidance, num_inference_steps=steps, latents=noise[:1])  # warm-up
    images, seconds = [], 0.0
    for start in range(0, len(labels), args.batch_size):
        part = slice(start, start + args.batch_size)
        began = time.perf_counter()
        out = pipe(
            digit=labels[part],
            guidance=guidance,
            num_inference_steps=steps,
            latents=noise[part],
            generator=step_noise_generator(0, start),  # the noise LCM adds between steps: seeded, apart from x_T
            output_type="pt",
        )
        seconds += time.perf_counter() - began
        images.append(out.images * 2 - 1)
    return torch.cat(images), seconds


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    classifier = DigitClassifier.from_pretrained(resolve_pretrained(args.classifier))
    real_images, _ = decode_digits(load_digits("mnistm", source=args.real_data, split="validation"), 28)
    real = pooled_features(classifier, real_images.float() / 127.5 - 1)
    train_images, train_labels = decode_digits(load_digits("mnistm", source=args.real_data, split="train"), 28)
    train_features = pooled_features(classifier, train_images[:1000].float() / 127.5 - 1)
    floor = frechet_distance(train_features, real)
    real_spread = within_digit_spread(train_features, train_labels[:1000].tolist())

    labels = [d for d in range(NUM_DIGITS) for _ in range(args.images_per_digit)]
    noise = torch.randn((len(labels), 3, 28, 28), generator=torch.Generator().manual_seed(0))
    rows = []
    for kind, sampler, steps in args.runs:
        pipe = load_pipeline(kind, sampler, args)
        images, seconds = sample(pipe, steps, labels, noise, args)
        guided = pipe.config.get("distilled_guidance") is None and args.guidance > 0
        accuracy = float((classifier.predict(images) == torch.tensor(labels)).float().mean())
        features = pooled_features(classifier, images)
        rows.append(
            {
                "model": Path(resolve_pretrained(getattr(args, kind))).name,
                "sampler": f"{sampler} {steps}",
                "forwards_per_digit": steps * (2 if guided else 1),
                "accuracy": round(accuracy, 4),
                "frechet_distance": round(frechet_distance(features, real), 2),
                "within_digit_spread": round(within_digit_spread(features, labels), 3),
                "seconds_per_1000": round(seconds * 1000 / len(labels), 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    record = {
        "about": (
            f"{len(labels)} digits ({args.images_per_digit} of each, seed 0, the same noises for every row), w = "
            f"{args.guidance:g}, batches of {args.batch_size}, {args.threads} torch threads on {cpu_name()}; "
            f"Fréchet distance in the project classifier's feature space against all "
            f"{len(real_images)} MNIST-M validation images (1000 real MNIST-M training images: {floor:.1f}); "
            f"within-digit spread: RMS distance of a digit's features to their mean, averaged over digits (real "
            f"training images: {real_spread:.2f})."
        ),
        "real_floor": round(floor, 2),
        "real_within_digit_spread": round(real_spread, 3),
        "rows": rows,
    }
    print(markdown_table(record))
    args.output_json.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(args.output_json, json.dumps(record, indent=2) + "\n")
    if args.write_card is not None:
        write_text_atomically(args.write_card / MEASUREMENTS, json.dumps(record, indent=2) + "\n")
        write_student_card(args.write_card)
    return record


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    from pipelines.command_line import run_command

    run_command(main, parse_args)
