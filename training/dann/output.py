"""What a DANN training run leaves behind: its model card (with the reproducing command) and its Hub-style folder."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.dann.modeling_dann import DANNConfig, DANNModel
from pipelines.hub.cards import accuracy_result, build_card, classifier_card_data, classifier_use_section
from training.run_folder import RUN_RECORD, publish


def train_dann_command(args) -> str:
    """The command line that reproduces a run from its parsed arguments."""
    parts = ["accelerate launch training/train_dann.py"]
    for key, value in vars(args).items():
        if value is None or value is False or key == "resume_from_checkpoint":
            continue
        if value is True:
            parts.append(f"--{key}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"--{key} " + " ".join(str(v) for v in value))
        else:
            parts.append(f"--{key} {value}")
    return " \\\n    ".join(parts)


def dann_card(config: DANNConfig, args, final: dict, history: list[dict], num_processes: int) -> str:
    """README.md of a train_dann.py folder: metrics, usage, the reproducing command, per-epoch accuracy, settings."""
    settings = {k: v for k, v in vars(args).items() if k not in ("output_dir", "resume_from_checkpoint")}
    adapt_row = ""
    if "target_val_accuracy_before_adapt_bn" in final:
        adapt_row = (
            "| target validation accuracy before re-estimating BatchNorm on the target | "
            f"{final['target_val_accuracy_before_adapt_bn']:.4f} |\n"
        )
    scale_note = ""
    if args.augment and min(args.aug_scale) > 1.0:
        scale_note = (
            f"The {args.source} training digits were zoomed by {args.aug_scale[0]:g}-{args.aug_scale[1]:g} "
            f"(the size of {args.target}'s digits), so the accuracy on {args.source} images at their "
            "own scale is low by design.\n\n"
        )
    rows = "\n".join(
        f"| {h['epoch']} | {h['loss']:.4f} | {h.get('target_val_accuracy', float('nan')):.4f} |" for h in history
    )
    data = classifier_card_data(
        f"dann-{args.source}-{args.target}-{args.mode}",
        [args.source, args.target],
        [accuracy_result(args.target, "validation", final["target_val_accuracy"])],
        tags=["domain-adaptation", "dann", args.source, args.target],
    )
    use = classifier_use_section(
        str(args.output_dir),
        "DANNModel",
        command=f"python -m pipelines.dann --pretrained {args.output_dir} --input_dir DIGITS/ --output_csv pred.csv",
    )
    body = f"""# DANN digit classifier: {args.source} -> {args.target} ({args.mode})

`DANNModel` (pipelines/dann/modeling_dann.py), architecture `{config.architecture}`, trained with
`training/train_dann.py` in `{args.mode}` mode on {num_processes} process(es).

| metric | value |
|---|---|
| target ({args.target}) validation accuracy | {final["target_val_accuracy"]:.4f} |
{adapt_row}| source ({args.source}) validation accuracy, as trained | {final["source_val_accuracy"]:.4f} |
| labelled training images seen | {final["images_seen"]} |
| wall time (s), data loading included | {final["wall_time_s"]:.1f} |

{scale_note}Inputs: RGB 28x28 in [-1, 1], resized with PIL bilinear and converted to RGB exactly as
`adapters.decode_digits` does; `python -m pipelines.dann` applies the same preprocessing.

{use}
## Reproduce

Data folders as in the project's shared data:

```bash
{train_dann_command(args)}
```

## Per-epoch target validation accuracy

| epoch | train loss | target val accuracy |
|---|---|---|
{rows}

## Settings

```json
{json.dumps(settings, indent=2, default=str)}
```
"""
    return str(build_card(data, body))


# The top-level names a run writes into --output_dir (training/run_folder.py refuses a folder holding one of them
# without a record of this run): the model with its code copies, card and metrics, and the checkpoints.
OUTPUT_NAMES = (
    "config.json",
    "model.safetensors",
    "README.md",
    "metrics.json",
    "configuration_dann.py",
    "modeling_dann.py",
    "image_processing_digits.py",
    "preprocessor_config.json",
    "checkpoints",
    RUN_RECORD,
)


def save_model(model: DANNModel, output_dir: Path, card: str, metrics: dict) -> None:
    """Publish weights, config, card and metrics together or not at all (training.run_folder.publish): the
    checkpoints and anything else in the folder stay, and a later `--resume_from_checkpoint latest` finds them."""

    def write(staging: Path) -> None:
        model.save_pretrained(staging)
        (staging / "README.md").write_text(card)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))

    publish(output_dir, write)
