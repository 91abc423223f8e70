"""The model card of a distilled student folder, from the records the run wrote into it.

`speed_quality.json` (written by `python -m benchmarks.bench_student --write_card FOLDER`) adds the measured
table: accuracy, Frechet distance and CPU seconds of teacher and student side by side.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.hub.cards import DATASET_IDS, build_card, card_data, diffusion_usage_snippets, save_card, usage_section

MEASUREMENTS = "speed_quality.json"
# the flags that make the model (where it is written, how often it logs or saves are left out)
RECIPE_FLAGS = (
    "teacher",
    "student_init",
    "guidance",
    "solver_steps",
    "num_paths",
    "shard_size",
    "default_steps",
    "train_batch_size",
    "learning_rate",
    "lr_warmup_steps",
    "max_train_steps",
    "ema_decay",
    "seed",
)

BODY = """# Few-step MNIST-M digits: a student distilled from `{teacher_name}`

A class-conditional UNet ({num_params} parameters) that draws MNIST-M digits in {default_steps} step(s) with
the classifier-free guidance w = {guidance:g} built in: one UNet forward per step instead of two, and
{default_steps} step(s) instead of the teacher's 6-10. `pipe(digit=3)` uses the folder's `LCMScheduler` and
{default_steps} step(s); `num_inference_steps` may be 1 to {solver_steps}. Other guidance strengths are refused
(use the teacher for them).

{usage}

## How it was made

- **Teacher**: `{teacher}` (weights SHA-256 `{teacher_sha}`), guided at w = {guidance:g}, sampled with
  DPM-Solver++ in {solver_steps} steps from {num_paths} seeded noises (equal numbers of each digit); every solver
  state and the end point of each path were recorded ({held_out} paths held out).
- **Student**: started from `{student_init}` and trained to map any recorded state (x_t, t, digit) to its path's
  end point through LCMScheduler's boundary condition (consistency distillation with the teacher's own
  trajectories as targets; Song et al. 2023, Luhman & Luhman 2021, guidance built in as in Meng et al. 2023).
- **Recipe**: {steps} steps of batch {batch}, AdamW lr {lr:g} (cosine), EMA {ema:g}; held-out loss
  {held_out_loss:.4f} at the end (mean squared error in [-1, 1] pixels).
- **Command**: `accelerate launch training/train_distill.py {flags}`
- **Time**: {seconds:.0f} s on {hardware}, of which {paths_seconds:.0f} s made teacher paths (shards an earlier
  run had made are reused, not counted).

{measurements}
"""


def measurement_table(folder: Path) -> str:
    path = folder / MEASUREMENTS
    if not path.is_file():
        return "## Measurements\n\nNot measured yet: run `python -m benchmarks.bench_student`."
    record = json.loads(path.read_text())
    return f"## Measurements\n\n{record['about']}\n\n{markdown_table(record)}"


def markdown_table(record: dict) -> str:
    """The rows of a `benchmarks.bench_student` record as a markdown table."""
    lines = [
        "| model | sampler | UNet forwards per digit | accuracy | Fréchet distance | within-digit spread "
        "| CPU s / 1000 digits |"
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for row in record["rows"]:
        lines.append(
            f"| {row['model']} | {row['sampler']} | {row['forwards_per_digit']} | {row['accuracy']:.3f} | "
            f"{row['frechet_distance']:.2f} | {row['within_digit_spread']:.2f} | {row['seconds_per_1000']:.1f} |"
        )
    return "\n".join(lines)


def write_student_card(folder: Path, location: Path | None = None) -> Path:
    folder = Path(folder)
    location = Path(location or folder)
    args = json.loads((folder / "training_args.json").read_text())
    summary = json.loads((folder / "train_summary.json").read_text())
    last = summary["history"][-1] if summary["history"] else {"held_out_loss": float("nan")}
    shown = {k: Path(v).name if k in ("teacher", "student_init") else v for k, v in args.items()}  # shipped names
    flags = " ".join(f"--{k} {v}" for k, v in shown.items() if k in RECIPE_FLAGS)
    body = BODY.format(
        teacher_name=Path(args["teacher"]).name,
        num_params=f"{summary['num_params'] / 1e6:.2f}M",
        default_steps=args["default_steps"],
        guidance=args["guidance"],
        solver_steps=args["solver_steps"],
        usage=usage_section(*diffusion_usage_snippets(str(location), "ConditionalDDPMPipeline"), "diffusers"),
        teacher=Path(args["teacher"]).name,
        teacher_sha=summary["teacher_sha256"][:16],
        num_paths=args["num_paths"],
        held_out=summary["num_held_out_paths"],
        student_init=Path(args["student_init"]).name,
        steps=summary["global_step"],
        batch=args["train_batch_size"],
        lr=args["learning_rate"],
        ema=args["ema_decay"],
        held_out_loss=last["held_out_loss"],
        flags=flags,
        seconds=summary["seconds"],
        paths_seconds=summary.get("teacher_paths_seconds_this_run", 0.0),
        hardware=summary["hardware"],
        measurements=measurement_table(folder),
    )
    data = card_data(
        library_name="diffusers",
        pipeline_tag="unconditional-image-generation",
        datasets=[DATASET_IDS["mnistm"]],
        tags=["diffusers", "distillation", "consistency-model", "classifier-free-guidance", "mnist-m"],
        metrics=["accuracy"],
        model_name=location.name,
        eval_results=None,
    )
    return save_card(build_card(data, body), folder)
