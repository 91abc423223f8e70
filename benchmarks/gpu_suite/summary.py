"""OUT/summary.json and OUT/summary.md of the GPU suite: the device, the versions, and every figure measured."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path

import torch

from adapters.folders import write_text_atomically

ROOT = Path(__file__).resolve().parents[2]  # the checkout whose commit the record names
GOALS = {
    "train": "a model whose 1000 digits score >= 0.99 in <= 60 s of wall time, data loading included",
    "ddpm": "1000 images, 400 DDPM steps: <= 8 s",
    "ddim": "1000 images, 50 DDIM steps: <= 1.5 s",
    "course_output": "course-output command <= 1.5 x the pipeline's time",
}


def environment(device: str) -> dict:
    def version(name):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown (no git checkout)"
    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"CPU ({platform.machine()})",
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "commit": commit,
        "packages": {
            n: version(n)
            for n in ("torch", "diffusers", "accelerate", "datasets", "transformers", "safetensors", "numpy")
        },
    }


def _timing_lines(timing: dict, sizes: dict) -> list[str]:
    scale = sizes["ddpm_steps"] / sizes["timing_ddpm_steps"]
    lines = ["| measure | variant | setting | result |", "|---|---|---|---|"]
    for r in timing.get("rows", []):
        if "error" in r:
            result = f"failed: {r['error'][:120]}"
        elif r["measure"] == "train":
            result = f"{r['ms_per_step']:.1f} ms/step, {r['images_per_s']:,.0f} img/s"
        elif r["measure"] == "ddpm":
            result = (
                f"1000 images: {r['seconds_for_1000'] * scale:.1f} s for {sizes['ddpm_steps']} steps "
                f"(x{scale:g} of the timed {sizes['timing_ddpm_steps']})"
            )
        else:
            result = f"1000 images: {r['seconds_for_1000']:.2f} s"
        lines.append(f"| {r['measure']} | {r['variant']} | {r.get('setting', '')} | {result} |")
    for name, error in timing.get("errors", {}).items():
        lines.append(f"\n{name} variants: {error}")
    lines.append(f"\nchosen for training and sampling: `{json.dumps(timing.get('choice', {}))}`")
    return lines


def _stage_lines(name: str, stage: dict, sizes: dict) -> list[str]:
    lines = [f"## {name}: {stage['status']} ({stage.get('stage_seconds', 0):.1f} s)", ""]
    if stage["status"] != "ok":
        return [*lines, f"```\n{stage.get('error')}\n{stage.get('traceback', '')}\n```", ""]
    if name == "timing":
        lines += _timing_lines(stage, sizes)
    elif name == "train":
        lines += [
            f"{stage['steps']} steps of the {stage['planned_steps']} planned, {stage['images_seen']:,} images, "
            f"{stage['train_seconds']:.1f} s including data loading (stopped by the budget: "
            f"{stage['stopped_by_time']}), final loss {stage['final_loss']:.4f}. Goal: {GOALS['train']}.",
            "",
            f"`python training/train_cfg.py {' '.join(stage['argv'])}`",
        ]
    elif name == "sample":
        lines += ["| sampler | steps | variant | images | seconds | accuracy |", "|---|---|---|---|---|---|"]
        lines += [
            f"| {r['sampler']} | {r['steps']} | {r['variant']} | {r['images']} | {r['seconds']:.2f} | "
            f"{r['accuracy']:.4f} |"
            for r in stage["rows"]
        ]
        c = stage["course_output"]
        lines += [
            "",
            f"course-output command (DDIM): {c['seconds']:.2f} s against the pipeline's "
            f"{c['pipeline_seconds']:.2f} s: {c['ratio']:.2f} x (goal {c['goal']}; the command also "
            "loads the model and writes the PNGs)",
        ]
    elif name == "dann":
        lines += [
            "| recipe | mode | target (USPS) val accuracy | source val accuracy | images | seconds |",
            "|---|---|---|---|---|---|",
        ]
        for r in stage["rows"]:
            if "skipped" in r:
                lines.append(f"| {r['recipe']} | {r['mode']} | skipped: {r['skipped']} | | | |")
            else:
                lines.append(
                    f"| {r['recipe']} | {r['mode']} | {r['target_val_accuracy']:.4f} | "
                    f"{r['source_val_accuracy']:.4f} | {r['images_seen']:,} | {r['wall_time_s']:.1f} |"
                )
    elif name == "faces":
        shipped, trained = stage["eta_grid_faces"]["shipped"], stage["eta_grid_faces"]["trained"]
        lines += [
            f"faces among the 40 eta-grid images: shipped model {shipped['faces']}, new model "
            f"{trained['faces']} (threshold {trained['threshold']:.3f}, benchmarks.gpu_suite.face_count)",
            "",
            "| eta | shipped | new |",
            "|---|---|---|",
        ]
        lines += [f"| {eta} | {n} | {trained['faces_per_eta'][eta]} |" for eta, n in shipped["faces_per_eta"].items()]
        lines += [
            "",
            f"new model: {stage['steps']} steps in {stage['train_seconds']:.1f} s, final loss "
            f"{stage['final_loss']:.4f}; figures in faces-figures/: ![eta grid](faces-figures/eta_grid.png)",
        ]
    return [*lines, ""]


def write_suite_summary(summary: dict, out: Path) -> None:
    """OUT/summary.json and OUT/summary.md, each written whole: the suite rewrites them after every stage."""
    write_text_atomically(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    env = summary["environment"]
    lines = [
        "# gpu_suite summary" + (" (dry run: tiny sizes on the CPU, not a measurement)" if summary["dry_run"] else ""),
        "",
        f"device: {env['device']} (CUDA {env['cuda']}); Python {env['python']}; commit {env['commit']}",
        "",
        "packages: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        "",
        f"command: `python -m benchmarks.gpu_suite {' '.join(summary['argv'])}`; total "
        f"{summary['total_seconds']:.0f} s",
        "",
    ]
    for name, stage in summary["stages"].items():
        lines += _stage_lines(name, stage, summary["sizes"])
    write_text_atomically(out / "summary.md", "\n".join(lines) + "\n")
