"""The end of a diffusion training run: the result, the records of its folder, the upload."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import UNet2DModel


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
