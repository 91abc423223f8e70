"""What a DANN training run leaves behind: its reproducing command and its Hub-style folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from adapters import write_folder_atomically
from pipelines.dann.modeling_dann import DANNModel


def training_command(args) -> str:
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


MODEL_FILES = ("config.json", "model.safetensors", "README.md", "metrics.json")


def save_model(model: DANNModel, output_dir: Path, card: str, metrics: dict) -> None:
    """Publish weights, config, card and metrics together or not at all (adapters.write_folder_atomically).

    The folder is swapped whole, so whatever else it holds (the checkpoints) is hard-linked into the staging
    folder first: nothing is copied and a later `--resume_from_checkpoint latest` still finds them.
    """

    def write(staging: Path) -> None:
        if output_dir.is_dir():
            for entry in output_dir.iterdir():
                if entry.name in MODEL_FILES:
                    continue
                if entry.is_dir():
                    shutil.copytree(entry, staging / entry.name, copy_function=os.link)
                else:
                    os.link(entry, staging / entry.name)
        model.save_pretrained(staging)
        (staging / "README.md").write_text(card)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
        for name in MODEL_FILES:
            os.chmod(staging / name, 0o644)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the published folder from other users

    write_folder_atomically(output_dir, write, replace_unmarked=True)  # `write` carries the run's files over
