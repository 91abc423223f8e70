"""The model card of a conditional-DDPM folder, built with `huggingface_hub.ModelCard` from records, not by hand.

    python -m training.cfg_card --folder hub_cards/cfg-mnistm --evaluations docs/benchmarks/samplers_cpu.json

A folder written by `training/train_cfg.py` holds `training_args.json` (every argument, so the run can be
repeated) and `train_summary.json` (steps reached, images seen, loss, time, hardware). `train_cfg.py` writes the
card from those two at the end of training; this command rewrites it once measurements exist, adding the
accuracy of generated digits per sampler (`benchmarks/bench_samplers.py` output) as `eval_results`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from PIL import Image

from adapters.folders import write_file_atomically
from pipelines.hub.cards import diffusion_usage_snippets, usage_section

MNISTM_HUB_ID = "Mike0307/MNIST-M"
# The arguments that define the model and its training; the rest (logging, paths) stays in training_args.json.
RECIPE_ARGS = [
    "block_out_channels",
    "layers_per_block",
    "norm_num_groups",
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "train_batch_size",
    "gradient_accumulation_steps",
    "max_train_steps",
    "learning_rate",
    "lr_scheduler",
    "lr_warmup_steps",
    "adam_weight_decay",
    "max_grad_norm",
    "ema_max_decay",
    "ema_power",
    "label_dropout",
    "mixed_precision",
    "seed",
]
# Flags whose value is the parser's default need not be spelled out in the command.
COMMAND_SKIP = {"output_dir", "resume_from_checkpoint", "push_to_hub", "hub_model_id", "report_to"}

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

A class-conditional DDPM with classifier-free guidance on 28x28 MNIST-M digits: a `UNet2DModel`
({{ num_params }} parameters, 11 class embeddings: digits 0-9 and the null class {{ null_class_id }}) trained by
`training/train_cfg.py` of the guided-diffusion-da project to predict the noise of a
{{ num_train_timesteps }}-step linear DDPM schedule. `guidance` is the course report's w:
eps = (1 + w) eps(x, c) - w eps(x, null); diffusers' guidance scale is 1 + w.

{{ usage }}
The folder's scheduler is DPM-Solver++ (trailing timesteps) on the trained schedule, so these calls take
10 denoising steps when `num_inference_steps` is not given; the table below measures 6-20. The report's
ancestral sampler with all {{ num_train_timesteps }} steps:
`pipe.scheduler = make_scheduler("ddpm", pipe.scheduler.config)` (`from pipelines import make_scheduler`), or
`DDPMScheduler.from_config(pipe.scheduler.config, timestep_spacing="leading")` with diffusers alone.

## Measured

{{ evaluation_text }}

## Training

{{ training_table }}

Re-create it (same data, same arguments; `training_args.json` holds every one, and
`python -m training.cfg_card --folder THIS_FOLDER --print_flags` prints them as flags):

```bash
{{ command }}
```

{{ provenance }}

![samples](samples.png)

`samples.png`: {{ samples_caption }}
{% if grid %}
![grid](grid.png)

`grid.png`: 10 samples (columns) of each digit 0-9 (rows), {{ grid }}.
{% endif %}"""


def training_flags(training_args: dict, defaults: dict | None = None) -> list[str]:
    """The train_cfg.py flags of a run: the recipe always, other arguments where they differ from `defaults`."""
    flags = []
    for name, value in training_args.items():
        if name in COMMAND_SKIP:
            continue
        if name not in RECIPE_ARGS and defaults is not None and defaults.get(name) == value:
            continue
        if isinstance(value, bool):
            flags += [f"--{name}"] if value else []
        elif isinstance(value, list):
            flags.append(f"--{name} " + " ".join(str(v) for v in value))
        elif value is not None:
            flags.append(f"--{name} {value}")
    return flags


def training_command(training_args: dict, defaults: dict | None = None) -> str:
    parts = ["accelerate launch --config_file accelerate_config.yaml training/train_cfg.py"]
    return " \\\n  ".join(parts + training_flags(training_args, defaults))


def train_cfg_defaults() -> dict:
    from training.train_cfg import parse_args  # imported here: train_cfg imports this module to write its card

    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(parse_args([])).items()}


def training_table(training_args: dict, summary: dict) -> str:
    steps, seen = summary["global_step"], summary["images_seen"]
    rows = [
        (
            "data",
            f"{summary.get('data', training_args.get('train_data'))}: {summary['num_images']:,} images, 28x28 RGB",
        ),
        (
            "steps reached x images per step",
            f"{steps:,} x {seen // max(steps, 1)} = {seen:,} images ({seen / summary['num_images']:.1f} epochs)",
        ),
        (
            "optimizer",
            f"AdamW, lr {training_args['learning_rate']}, {training_args['lr_scheduler']} schedule over "
            f"{training_args['max_train_steps']:,} steps, {training_args['lr_warmup_steps']} warm-up steps",
        ),
        ("weights", f"EMA (max decay {training_args['ema_max_decay']}, warm-up power {training_args['ema_power']})"),
        (
            "UNet",
            f"block_out_channels {tuple(training_args['block_out_channels'])}, layers_per_block "
            f"{training_args['layers_per_block']}, norm_num_groups {training_args['norm_num_groups']}, "
            "self-attention at the lowest resolution",
        ),
        ("label dropout (null class)", str(training_args["label_dropout"])),
        ("precision / processes", f"{training_args['mixed_precision']} / {summary.get('num_processes', 1)}"),
        ("training loss (last logged)", f"{summary['final_loss']:.4f}"),
        ("hardware", summary.get("hardware", "not recorded")),
    ]
    if summary.get("seconds"):
        rows.append(("training time", f"{summary['seconds'] / 60:.1f} min"))
    lines = ["| setting | value |", "|---|---|"] + [f"| {key} | {value} |" for key, value in rows]
    return "\n".join(lines)


def model_evaluations(evaluations: list[dict], folder: Path) -> list[dict]:
    """The benchmark rows of this folder (matched by folder name), in the benchmark's order."""
    return [row for row in evaluations if Path(row["model"]).name == folder.name]


def evaluation_text(rows: list[dict], device: str) -> str:
    if not rows:
        return "Not measured yet: run `benchmarks/bench_samplers.py` and `python -m training.cfg_card` on this folder."
    lines = [
        "Digits generated by the course-output command (w = 2, seed 0, each image's noise drawn from (seed, digit, "
        "index), 100 images per call) and recognised by the project's MNIST-M classifier "
        "(`hub_cards/mnistm-digit-classifier`, 0.986 on real MNIST-M validation images); process CPU time with one "
        f"torch thread on {device} (wall time alone on one core):",
        "",
        "| sampler | steps | images | accuracy | CPU seconds per 1000 images |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        seconds = r.get("cpu_seconds_per_1000", r["seconds_per_1000"])
        lines.append(f"| {r['scheduler']} | {r['steps']} | {r['images']} | {r['accuracy']:.3f} | {seconds:.0f} |")
    return "\n".join(lines)


def eval_results(rows: list[dict]) -> list[EvalResult]:
    return [
        EvalResult(
            task_type="unconditional-image-generation",
            dataset_type=MNISTM_HUB_ID,
            dataset_name="MNIST-M",
            metric_type="accuracy",
            metric_value=round(r["accuracy"], 4),
            metric_name=f"digit accuracy of {r['images']} generated images, {r['scheduler']} {r['steps']} steps, w = 2 "
            "(project classifier)",
        )
        for r in rows
    ]


def course_output_command(repo: str, fast_steps: int) -> str:
    return (
        f"python -m pipelines.conditional_ddpm --pretrained {repo} --output_dir OUT \\\n"
        f"    --scheduler dpm --num_inference_steps {fast_steps}   # the course's 1000 digits"
    )


def build_card(
    folder: Path,
    evaluations: list[dict] | None = None,
    device: str = "",
    repo: str | None = None,
    fast_steps: int = 10,
    title: str | None = None,
) -> ModelCard:
    folder = Path(folder)
    training_args = json.loads((folder / "training_args.json").read_text())
    summary = json.loads((folder / "train_summary.json").read_text())
    model_index = json.loads((folder / "model_index.json").read_text())
    rows = model_evaluations(evaluations or [], folder)
    card_data = ModelCardData(
        library_name="diffusers",
        pipeline_tag="unconditional-image-generation",
        datasets=[MNISTM_HUB_ID],
        tags=["diffusers", "ddpm", "classifier-free-guidance", "class-conditional", "mnist-m"],
        metrics=["accuracy"],
        model_name=folder.name,
        eval_results=eval_results(rows) or None,
    )
    return ModelCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        title=title or f"Conditional DDPM with classifier-free guidance on MNIST-M ({folder.name})",
        num_params=f"{summary['num_params'] / 1e6:.2f}M",
        null_class_id=model_index.get("null_class_id", 10),
        num_train_timesteps=training_args["num_train_timesteps"],
        repo=repo or str(folder),
        usage=usage_section(
            *diffusion_usage_snippets(repo or str(folder), "ConditionalDDPMPipeline"),
            "diffusers",
            command=course_output_command(repo or str(folder), fast_steps),
        ),
        fast_steps=fast_steps,
        evaluation_text=evaluation_text(rows, device),
        training_table=training_table(training_args, summary),
        command=training_command(training_args, train_cfg_defaults()),
        provenance=summary.get("provenance", ""),
        samples_caption=summary.get("samples_caption", "rows are digits 0-9, DDIM, w = 2, fixed seed."),
        grid=GRID_CAPTION.format(steps=fast_steps) if (folder / "grid.png").is_file() else "",
    )


GRID_CAPTION = "DPM-Solver++ {steps} steps, w = 2, seed 0 (`python -m training.cfg_card --write_grid`)"


def write_grid(folder: Path, steps: int) -> Path:
    """grid.png: 10 samples of each digit with the fast sampler, the picture a Hub visitor looks at first."""
    from diffusers.utils import make_image_grid

    from pipelines.conditional_ddpm import ConditionalDDPMPipeline, make_scheduler

    pipe = ConditionalDDPMPipeline.from_pretrained(folder)
    pipe.scheduler = make_scheduler("dpm", pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        digit=list(range(10)),
        guidance=2.0,
        num_images_per_digit=10,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
    ).images
    path = Path(folder) / "grid.png"
    make_image_grid([image.resize((56, 56), Image.NEAREST) for image in images], rows=10, cols=10).save(path)
    return path


def write_card(folder: Path, card: ModelCard) -> None:
    """Write README.md through a temporary file, so an interrupted write never leaves half a card."""
    write_file_atomically(Path(folder) / "README.md", lambda temporary: card.save(temporary))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, required=True, help="a train_cfg.py output folder")
    parser.add_argument("--evaluations", type=Path, default=None, help="benchmarks/bench_samplers.py JSON")
    parser.add_argument("--repo", default=None, help="the Hub id or path shown in the usage snippets")
    parser.add_argument("--fast_steps", type=int, default=10, help="DPM-Solver steps shown in the snippets")
    parser.add_argument("--write_grid", action="store_true", help="(re)draw grid.png with the fast sampler first")
    parser.add_argument(
        "--print_flags",
        action="store_true",
        help="only print the folder's train_cfg.py flags on one line, for "
        "`accelerate launch training/train_cfg.py $(python -m training.cfg_card --folder F "
        "--print_flags)`",
    )
    args = parser.parse_args(argv)
    for name in ("training_args.json", "train_summary.json", "model_index.json"):
        if not (args.folder / name).is_file():
            raise FileNotFoundError(f"{args.folder} has no {name}: is it a train_cfg.py output folder?")
    if args.evaluations is not None and not args.evaluations.is_file():
        raise FileNotFoundError(f"--evaluations {args.evaluations} does not exist")
    return args


def main(args) -> Path | None:
    if args.print_flags:
        training_args = json.loads((args.folder / "training_args.json").read_text())
        print(" ".join(training_flags(training_args, train_cfg_defaults())))
        return None
    if args.write_grid:
        write_grid(args.folder, args.fast_steps)
    report = json.loads(args.evaluations.read_text()) if args.evaluations else {"results": [], "device": ""}
    card = build_card(args.folder, report["results"], report.get("device", ""), args.repo, args.fast_steps)
    write_card(args.folder, card)
    print(f"wrote {args.folder / 'README.md'}")
    return args.folder / "README.md"


if __name__ == "__main__":
    from pipelines.command_line import run_command

    run_command(main, parse_args)
