"""The end of a diffusion training run: the result, the Hub-style folder written whole, the upload."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import UNet2DModel

from adapters.folders import write_folder_atomically

# What training leaves in --output_dir besides the exported pipeline; it must survive the export.
TRAINING_ARTEFACTS = ("checkpoint-", "logs", "samples")


@dataclass
class TrainResult:
    unet: UNet2DModel  # unwrapped, holding the EMA weights
    final_loss: float
    loss_history: list[tuple[int, float]]  # (step, mean loss since the previous log)
    global_step: int
    images_seen: int
    seconds: float
    num_processes: int
    stopped_by_time: bool = False

    def summary(self) -> dict:
        """Every field but the model, for train_summary.json."""
        return {k: v for k, v in vars(self).items() if k != "unet"}


def finish_training(
    accelerator,
    unet,
    ema,
    args,
    *,
    start: float,
    last_loss: float,
    loss_history: list[tuple[int, float]],
    global_step: int,
    stopped_by_time: bool,
) -> TrainResult:
    """The end of the training loop: unwrap the UNet, load the EMA weights into it, close the run on every
    process."""
    model = accelerator.unwrap_model(unet, keep_torch_compile=False)
    ema.copy_to(model.parameters())
    model = model.to(memory_format=torch.contiguous_format)  # a --channels_last run saves plain tensors
    accelerator.wait_for_everyone()
    accelerator.end_training()
    per_step = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    result = TrainResult(
        unet=model,
        final_loss=last_loss,
        loss_history=loss_history,
        global_step=global_step,
        images_seen=global_step * per_step,
        seconds=time.perf_counter() - start,
        num_processes=accelerator.num_processes,
        stopped_by_time=stopped_by_time,
    )
    return result


def training_args_json(args) -> str:
    return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, indent=2) + "\n"


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # a filesystem without hard links
        shutil.copy2(source, target)


def publish(output_dir: Path, write_export: Callable[[Path], None]) -> None:
    """Replace `output_dir` whole by a staged folder holding the new export and the run's training files.

    Checkpoints, logs and samples live in `output_dir` too; they are hard-linked into the staging folder
    (no copy of the data, and the originals stay intact until the final rename), so that the atomic swap
    of adapters.folders.write_folder_atomically keeps them.
    """

    def write(staging: Path) -> None:
        write_export(staging)
        for entry in sorted(output_dir.iterdir()) if output_dir.is_dir() else []:
            if not entry.name.startswith(TRAINING_ARTEFACTS):
                continue
            if entry.is_dir():
                shutil.copytree(entry, staging / entry.name, copy_function=_link_or_copy)
            else:
                _link_or_copy(str(entry), str(staging / entry.name))

    write_folder_atomically(output_dir, write)


def push_folder_to_hub(folder: Path, repo_id: str) -> str:
    """Upload the exported folder (not the checkpoints). Offline, fail clearly; the local folder stays."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    if os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE"):
        raise ConnectionError(f"--push_to_hub needs the network but HF_HUB_OFFLINE is set; {folder} is saved locally")
    api = HfApi()
    try:
        api.create_repo(repo_id, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=folder, ignore_patterns=["checkpoint-*", "logs/*", "samples/*", ".*"]
        )
    except (OSError, OfflineModeIsEnabled) as error:
        raise ConnectionError(f"could not push {folder} to the Hub ({error}); the local folder is intact") from error
    return commit.commit_url
