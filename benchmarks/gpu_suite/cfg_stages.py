"""The conditional-DDPM stages of the GPU suite: old vs new timing, training to quality, sampling and scoring."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image

import hub_cards
from benchmarks.variants import (
    SAMPLE_ABLATION,
    TRAIN_ABLATION,
    autocast,
    is_compiled,
    parse_variant,
    sampling_generator,
    sampling_unet,
)
from pipelines.conditional_ddpm import course_output
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import NUM_DIGITS, ConditionalDDPMPipeline
from pipelines.conditional_ddpm.schedulers import make_scheduler
from pipelines.digit_classifier.modeling_digit_classifier import DigitClassifier
from pipelines.digit_classifier.score import score_folder
from training import train_cfg

ROOT = Path(__file__).resolve().parents[2]  # the timing child runs `python -m benchmarks.bench_cfg` from here
# The ablations of benchmarks.variants, split: the compiled variants run in a child of their own with its own
# deadline, so that a compiler that hangs costs only its budget.
EAGER_TRAIN = [variant for variant in TRAIN_ABLATION if not is_compiled(variant)]
EAGER_SAMPLE = [variant for variant in SAMPLE_ABLATION if not is_compiled(variant)]
COMPILED = [variant for variant in TRAIN_ABLATION if is_compiled(variant)]


def run_bench(ctx, name: str, argv: list[str], timeout_s: float) -> dict:
    """benchmarks.bench_cfg in a child process with a deadline: a compiler that hangs costs its budget only."""
    output = ctx.out / f"{name}.json"
    command = [sys.executable, "-m", "benchmarks.bench_cfg", *argv, "--output_json", str(output)]
    if ctx.dry_run:
        command += ["--num_threads", "1"]
    with open(ctx.out / f"{name}.log", "w") as log:
        try:
            subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=True)
        except subprocess.TimeoutExpired:
            error = f"stopped at its {timeout_s:.0f} s budget (see {name}.log); the rows before are kept"
        except subprocess.CalledProcessError as failure:
            error = f"exit status {failure.returncode} (see {name}.log)"
        else:
            return json.loads(output.read_text())
    partial = json.loads(output.read_text()) if output.is_file() else {"results": []}
    return {**partial, "error": error}


def timing_stage(ctx) -> dict:
    """(c) old and new training steps and samplers side by side, each measure alone; compiled variants apart."""
    s = ctx.sizes
    common = [
        "--device",
        ctx.device,
        "--block_out_channels",
        *map(str, s.unet),
        "--norm_num_groups",
        str(s.groups),
        "--layers_per_block",
        str(s.layers),
        "--train_data",
        str(ctx.data / "mnistm"),
        "--batch_size",
        str(s.timing_batch),
        "--train_steps",
        str(s.timing_steps),
        "--warmup_steps",
        str(s.timing_warmup),
        "--num_images",
        str(s.num_images),
        "--ddim_steps",
        str(s.ddim_steps),
        "--ddpm_steps",
        str(s.timing_ddpm_steps),
        "--fast_steps",
        str(s.fast_steps),
        "--seed",
        str(ctx.seed),
    ]
    eager = run_bench(
        ctx,
        "timing_eager",
        [
            *common,
            "--measure",
            "train",
            "ddpm",
            "ddim",
            "fast",
            "--train_variants",
            *s.eager_train,
            "--sample_variants",
            *s.eager_sample,
        ],
        ctx.budget("timing_eager"),
    )
    compiled = {"results": []}
    if s.compiled:
        compiled = run_bench(
            ctx,
            "timing_compiled",
            [*common, "--measure", "train", "ddim", "--train_variants", *s.compiled, "--sample_variants", *s.compiled],
            ctx.budget("timing_compiled"),
        )
    rows = eager["results"] + compiled["results"]
    return {
        "rows": rows,
        "errors": {k: v["error"] for k, v in (("eager", eager), ("compiled", compiled)) if "error" in v},
        "device": eager.get("device"),
        "params": eager.get("params"),
        "gflop_per_image": eager.get("gflop_per_image"),
        "choice": choose_fast_settings(rows),
    }


def _row(rows, measure, variant):
    return next((r for r in rows if r["measure"] == measure and r["variant"] == variant and "error" not in r), None)


def choose_fast_settings(rows) -> dict:
    """bf16 / channels_last for training and sampling where the timing says they pay (10% or more)."""

    def faster(measure, key, base, candidate):
        a, b = _row(rows, measure, base), _row(rows, measure, candidate)
        return bool(a and b and b[key] < 0.9 * a[key])

    new_train = _row(rows, "train", "new")
    return {
        "train_bf16": faster("train", "ms_per_step", "new", "new+bf16"),
        "train_channels_last": faster("train", "ms_per_step", "new", "new+channels_last"),
        "sample_variant": min(
            (
                r
                for r in rows
                if r["measure"] == "ddpm" and "error" not in r and r["variant"].startswith("new") and r.get("finite")
            ),
            key=lambda r: r["timed_s"],
            default={"variant": "new"},
        )["variant"],
        "train_ms_per_step": new_train["ms_per_step"] if new_train else None,
    }


def train_stage(ctx, timing: dict | None) -> dict:
    """(a) from scratch to a model, the fast path, against a wall-time budget that includes data loading."""
    s = ctx.sizes
    choice = {**(timing or {}).get("choice", {}), **s.force_choice}
    steps = s.train_steps
    if choice.get("train_ms_per_step") and not ctx.dry_run:
        # size the cosine schedule to what fits: the timing ran batch s.timing_batch, training runs s.train_batch
        ms = choice["train_ms_per_step"] * s.train_batch / s.timing_batch
        steps = max(500, min(steps, int(0.85 * (s.train_budget_s - 10) * 1000 / ms)))
    output = ctx.out / "cfg-model"
    argv = [
        "--train_data",
        str(ctx.data / "mnistm"),
        "--output_dir",
        str(output),
        "--report_to",
        "none",
        "--block_out_channels",
        *map(str, s.unet),
        "--norm_num_groups",
        str(s.groups),
        "--layers_per_block",
        str(s.layers),
        "--train_batch_size",
        str(s.train_batch),
        "--learning_rate",
        str(s.train_lr),
        "--lr_warmup_steps",
        str(min(s.train_warmup, steps // 5 or 1)),
        "--max_train_steps",
        str(steps),
        "--max_train_seconds",
        str(s.train_budget_s),
        "--logging_steps",
        str(s.logging_steps),
        "--checkpointing_steps",
        str(steps),
        "--checkpoints_total_limit",
        "1",
        "--save_images_steps",
        str(10 * steps),
        "--sample_images_per_digit",
        "4",
        "--sample_inference_steps",
        str(s.ddim_steps),
        "--mixed_precision",
        "bf16" if choice.get("train_bf16") else "no",
        *s.train_extra,
    ]
    if choice.get("train_channels_last"):
        argv.append("--channels_last")
    started = time.perf_counter()
    result = train_cfg.main(train_cfg.parse_args(argv))
    return {
        "argv": argv,
        "planned_steps": steps,
        "steps": result.global_step,
        "images_seen": result.images_seen,
        "train_seconds": result.seconds,
        "stopped_by_time": result.stopped_by_time,
        "final_loss": result.final_loss,
        "stage_seconds": time.perf_counter() - started,
        "model": str(output),
    }


def write_digits(images: torch.Tensor, labels: list[int], folder: Path) -> None:
    """[N, 3, H, W] in [0, 1] -> the course's {digit}_{001..}.png files."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(range(NUM_DIGITS), 0)
    pixels = images.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    for array, label in zip(pixels, labels, strict=True):
        counts[label] += 1
        Image.fromarray(array).save(folder / f"{label}_{counts[label]:03d}.png")


def sample_and_score(ctx, model_dir: Path, choice: dict) -> dict:
    """(b) 1000 digits with DDPM (all steps), DDIM 50 and the fast sampler, each timed and scored."""
    s, device = ctx.sizes, torch.device(ctx.device)
    pipe = ConditionalDDPMPipeline.from_pretrained(model_dir).to(device)
    pipe.set_progress_bar_config(disable=True)
    variant = choice.get("sample_variant", "new")
    settings = parse_variant(variant)
    unet = sampling_unet(pipe.unet, settings)
    classifier = DigitClassifier.from_pretrained(hub_cards.path("mnistm-digit-classifier")).to(device)
    rows = []
    for sampler, steps in (("ddpm", s.ddpm_steps), ("ddim", s.ddim_steps), (s.fast_sampler, s.fast_steps)):
        run = ConditionalDDPMPipeline(unet, make_scheduler(sampler, pipe.scheduler.config), pipe.config.null_class_id)
        run.set_progress_bar_config(disable=True)
        for timed in (False, True):  # first 2 steps at the same batch shape: cuDNN autotuning, the allocator
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            with autocast(settings, device):
                output = run(
                    digit=list(range(NUM_DIGITS)),
                    guidance=2.0,
                    num_images_per_digit=s.images_per_digit,
                    num_inference_steps=steps if timed else min(2, steps),
                    generator=sampling_generator(settings, device, ctx.seed),
                    output_type="pt",
                )
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
        folder = ctx.out / "samples" / f"{sampler}-{steps}"
        write_digits(output.images, output.labels, folder)
        report = score_folder(classifier, folder)
        rows.append(
            {
                "sampler": sampler,
                "steps": steps,
                "variant": variant,
                "images": len(output.labels),
                "seconds": seconds,
                "accuracy": report["accuracy"],
                "per_digit": {d: r["accuracy"] for d, r in report["per_digit"].items()},
            }
        )
    return {"rows": rows, "course_output": course_output_ratio(ctx, model_dir, rows)}


def course_output_ratio(ctx, model_dir: Path, rows) -> dict:
    """The course-output command (digits mixed in batches of 1000 on a GPU) against the pipeline's own time."""
    s = ctx.sizes
    folder = ctx.out / "course-output-ddim"
    argv = [
        "--pretrained",
        str(model_dir),
        "--output_dir",
        str(folder),
        "--overwrite",
        "--scheduler",
        "ddim",
        "--num_inference_steps",
        str(s.ddim_steps),
        "--images_per_digit",
        str(s.images_per_digit),
        "--device",
        ctx.device,
    ]
    started = time.perf_counter()
    course_output.main(course_output.parse_args(argv))
    seconds = time.perf_counter() - started
    pipeline = next(r for r in rows if r["sampler"] == "ddim")
    return {
        "argv": argv,
        "seconds": seconds,
        "pipeline_seconds": pipeline["seconds"],
        "ratio": seconds / pipeline["seconds"],
        "goal": "<= 1.5",
    }
