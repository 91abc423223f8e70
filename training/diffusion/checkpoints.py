"""The one checkpoint convention of the diffusion training scripts, and EMA weights saved without pickles.

Convention: `OUTPUT_DIR/checkpoint-N` folders (N = optimizer steps done), at most `--checkpoints_total_limit`
of them, written by `accelerator.save_state`. Chosen over accelerate's automatic `checkpoints/checkpoint_i`
naming because the step is in the name: exact resume needs N (it replays micro-step N * accumulation onward),
`--resume_from_checkpoint latest` can pick the newest by it, and it is diffusers' training-script layout,
so users of train_unconditional.py find what they expect. accelerate's own `total_limit` only prunes its
automatic names, hence the pruning below.

EMA: saved with `EMAModel.save_pretrained` into `checkpoint-N/unet_ema` (a UNet folder in safetensors whose
config carries the EMA step and decay) by accelerate's save-state hook, and read back by its load-state
hook, as diffusers' train_unconditional.py does. `register_for_checkpointing(ema)` would instead write
`custom_checkpoint_0.pkl`, which accelerate loads with weights_only=False (it unpickles).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from accelerate import Accelerator
from diffusers import UNet2DModel
from diffusers.training_utils import EMAModel

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
EMA_FOLDER = "unet_ema"


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return sorted(found)


def resolve_checkpoint(resume: str | None, output_dir: Path) -> tuple[int, Path] | None:
    """'latest' -> the newest checkpoint-N in output_dir (None when there is none yet); a path -> itself."""
    if resume is None:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume)
    match = CHECKPOINT_PATTERN.match(path.name)
    if not path.is_dir() or not match:
        raise FileNotFoundError(f"--resume_from_checkpoint {resume!r} is not a checkpoint-N folder")
    return int(match.group(1)), path


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, total_limit: int | None) -> None:
    """save_state('checkpoint-N'), first deleting the oldest so that at most `total_limit` remain."""
    if accelerator.is_main_process and total_limit is not None:
        existing = list_checkpoints(output_dir)
        for _, old in existing[: max(0, len(existing) - total_limit + 1)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(output_dir / f"checkpoint-{step}"))


def register_ema_hooks(accelerator: Accelerator, ema: EMAModel) -> None:
    """Save and load `ema` with the checkpoint as a diffusers folder (safetensors), never as a pickle."""

    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            ema.save_pretrained(os.path.join(output_dir, EMA_FOLDER))

    def load_hook(models, input_dir):
        path = os.path.join(input_dir, EMA_FOLDER)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"{input_dir} has no {EMA_FOLDER}/: not a checkpoint of this training code")
        loaded = EMAModel.from_pretrained(path, model_cls=UNet2DModel, foreach=ema.foreach)
        ema.load_state_dict(loaded.state_dict())
        ema.to(accelerator.device)

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)
