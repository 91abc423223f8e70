"""The model cards of the two diffusion folder kinds, built from the folder's records with pipelines.hub.cards.

A folder written by the training loop holds `training_args.json` (every flag, so the run can be repeated)
and `train_summary.json` (steps reached, images seen, loss, time, hardware). Both cards are made from those
two files alone, so a card can be rebuilt at any time (`python -m training.cfg_card` does it for the
conditional model, adding the measured accuracy of generated digits per sampler).

`location` is where users will find the folder (the card names it in its snippets and title); it defaults to
the folder itself, and differs while the training loop writes the card into its staging folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard

from adapters.folders import write_file_atomically
from pipelines.hub.cards import DATASET_IDS, build_card, card_data, diffusion_usage_snippets, usage_section
from training.diffusion.args import conditional_defaults

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
GRID_CAPTION = "DPM-Solver++ {steps} steps, w = 2, seed 0 (`python -m training.cfg_card --write_grid`)"

CONDITIONAL_BODY = """# {title}

A class-conditional DDPM with classifier-free guidance on 28x28 MNIST-M digits: a `UNet2DModel`
({num_params} parameters, 11 class embeddings: digits 0-9 and the null class {null_class_id}) trained by
`training/train_cfg.py` of the guided-diffusion-da project to predict the noise of a
{num_train_timesteps}-step linear DDPM schedule. `guidance` is the course report's w:
eps = (1 + w) eps(x, c) - w eps(x, null); diffusers' guidance scale is 1 + w.

{usage}
The folder's scheduler is DPM-Solver++ (trailing timesteps) on the trained schedule, so these calls take
10 denoising steps when `num_inference_steps` is not given; the table below measures 6-20. The report's
ancestral sampler with all {num_train_timesteps} steps:
`pipe.scheduler = make_scheduler("ddpm", pipe.scheduler.config)` (`from pipelines import make_scheduler`), or
`DDPMScheduler.from_config(pipe.scheduler.config, timestep_spacing="leading")` with diffusers alone.

## Measured

{evaluation_text}

## Training

{training_table}

Re-create it (same data, same arguments; `training_args.json` holds every one, and
`python -m training.cfg_card --folder THIS_FOLDER --print_flags` prints them as flags):

```bash
{command}
```

{provenance}

![samples](samples.png)

`samples.png`: {samples_caption}
"""

GRID_SECTION = """
![grid](grid.png)

`grid.png`: 10 samples (columns) of each digit 0-9 (rows), {grid}.
"""


def read_records(folder: Path) -> tuple[dict, dict]:
    """(training_args.json, train_summary.json) of a folder written by the diffusion training loop."""
    return (
        json.loads((folder / "training_args.json").read_text()),
        json.loads((folder / "train_summary.json").read_text()),
    )


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


def train_cfg_command(training_args: dict) -> str:
    """The command that repeats a train_cfg.py run, flags at their default left out."""
    parts = ["accelerate launch --config_file accelerate_config.yaml training/train_cfg.py"]
    return " \\\n  ".join(parts + training_flags(training_args, conditional_defaults()))


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


def digit_accuracy_results(rows: list[dict]) -> list[EvalResult]:
    return [
        EvalResult(
            task_type="unconditional-image-generation",
            dataset_type=DATASET_IDS["mnistm"],
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


def conditional_ddpm_card(
    folder: Path,
    evaluations: list[dict] | None = None,
    device: str = "",
    repo: str | None = None,
    fast_steps: int = 10,
    title: str | None = None,
    location: Path | None = None,
) -> ModelCard:
    """The card of a train_cfg.py folder; `evaluations`: benchmarks/bench_samplers.py rows (this folder's are
    picked by folder name)."""
    folder = Path(folder)
    location = Path(location or folder)
    training_args, summary = read_records(folder)
    model_index = json.loads((folder / "model_index.json").read_text())
    rows = [row for row in evaluations or [] if Path(row["model"]).name == location.name]
    ref = repo or str(location)
    data = card_data(
        library_name="diffusers",
        pipeline_tag="unconditional-image-generation",
        datasets=[DATASET_IDS["mnistm"]],
        tags=["diffusers", "ddpm", "classifier-free-guidance", "class-conditional", "mnist-m"],
        metrics=["accuracy"],
        model_name=location.name,
        eval_results=digit_accuracy_results(rows) or None,
    )
    body = CONDITIONAL_BODY.format(
        title=title or f"Conditional DDPM with classifier-free guidance on MNIST-M ({location.name})",
        num_params=f"{summary['num_params'] / 1e6:.2f}M",
        null_class_id=model_index.get("null_class_id", 10),
        num_train_timesteps=training_args["num_train_timesteps"],
        usage=usage_section(
            *diffusion_usage_snippets(ref, "ConditionalDDPMPipeline"),
            "diffusers",
            command=course_output_command(ref, fast_steps),
        ),
        evaluation_text=evaluation_text(rows, device),
        training_table=training_table(training_args, summary),
        command=train_cfg_command(training_args),
        provenance=summary.get("provenance", ""),
        samples_caption=summary.get("samples_caption", "rows are digits 0-9, DDIM, w = 2, fixed seed."),
    )
    if (folder / "grid.png").is_file():
        body += GRID_SECTION.format(grid=GRID_CAPTION.format(steps=fast_steps))
    return build_card(data, body)


def ddpm_card(folder: Path, location: Path | None = None) -> ModelCard:
    """The card of a train_ddpm.py folder, a plain diffusers `DDPMPipeline`."""
    folder = Path(folder)
    location = Path(location or folder)
    args, summary = read_records(folder)
    data_ref = str(args["train_data"])
    hub_dataset = [data_ref] if len(data_ref.split("/")) == 2 and not Path(data_ref).exists() else []
    loss = EvalResult(
        task_type="unconditional-image-generation",
        dataset_type=hub_dataset[0] if hub_dataset else "local",
        dataset_name=f"{data_ref} (training images)",
        dataset_split="train",
        metric_type="loss",
        metric_name="final training loss (noise MSE)",
        metric_value=round(float(summary["final_loss"]), 4),
    )
    data = card_data(
        library_name="diffusers",
        pipeline_tag="unconditional-image-generation",
        datasets=hub_dataset,
        model_name=location.name,
        eval_results=[loss],
        metrics=["loss"],
        tags=["diffusers", "ddpm", "unconditional-image-generation"],
    )
    use = usage_section(*diffusion_usage_snippets(str(location), "DDPMPipeline"), "diffusers")
    steps, num_images = summary["global_step"], summary["num_images"]
    body = f"""
# Unconditional DDPM

A `UNet2DModel` ({summary["num_params"] / 1e6:.2f}M parameters) trained by `training/train_ddpm.py` to predict the
noise of a {args["num_train_timesteps"]}-step DDPM schedule (linear betas {args["beta_start"]} -> {args["beta_end"]}).
The folder is a plain diffusers `DDPMPipeline` (no code of its own); `UNet2DModel.from_pretrained(folder,
subfolder="unet")` and `DDIMScheduler.from_pretrained(folder, subfolder="scheduler")` load its parts.

| setting | value |
|---|---|
| data | {data_ref}: {num_images} images, {args["resolution"]} px, {args["channels"]} channel(s) |
| steps x images per step | {steps} x {summary["images_seen"] // max(steps, 1)} \
({summary["images_seen"] / num_images:.1f} epochs) |
| optimizer | AdamW lr {args["learning_rate"]}, {args["lr_scheduler"]}, {args["lr_warmup_steps"]} warm-up steps |
| EMA | max decay {args["ema_max_decay"]} (the saved weights) |
| UNet | block_out_channels {tuple(args["block_out_channels"])}, layers_per_block {args["layers_per_block"]} |
| final training loss (metric) | {summary["final_loss"]:.4f} |
| training time / processes | {summary["seconds"] / 60:.1f} min / {summary["num_processes"]} |

{use}
![samples](samples.png)

`samples.png`: DDIM {args["sample_inference_steps"]} steps, eta 0, seed {args["seed"]}.
"""
    return build_card(data, body)


def _write_readme(folder: Path, card: ModelCard) -> None:
    write_file_atomically(Path(folder) / "README.md", card.save)


def write_conditional_ddpm_card(folder: Path, **card_options) -> None:
    """README.md of a train_cfg.py folder, written whole (options: those of `conditional_ddpm_card`)."""
    _write_readme(folder, conditional_ddpm_card(folder, **card_options))


def write_ddpm_card(folder: Path, location: Path | None = None) -> None:
    """README.md of a train_ddpm.py folder, written whole."""
    _write_readme(folder, ddpm_card(folder, location))
