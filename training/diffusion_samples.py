"""Small helpers of the training loop that touch the host: sample grids for the logs, the time budget."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch


def log_sample_grid(accelerator, unet, ema, sample_grid, output_dir: Path, step: int) -> None:
    """Draw `sample_grid(model)` with the EMA weights on the main process; save it and send it to TensorBoard."""
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(unet, keep_torch_compile=False)
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
        grid = sample_grid(model)
        ema.restore(model.parameters())
        (output_dir / "samples").mkdir(exist_ok=True)
        grid.save(output_dir / "samples" / f"step-{step:06d}.png")
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.writer.add_image("samples", np.asarray(grid), step, dataformats="HWC")
    accelerator.wait_for_everyone()


def out_of_time(accelerator, start: float, budget_s: float | None) -> bool:
    """True on every process once any process has used `budget_s` seconds since `start`.

    A collective, so call it at the same steps on every process (the logging steps, which read the loss
    back anyway): stopping on one process alone would leave the others waiting in the next all-reduce.
    """
    if budget_s is None:
        return False
    over = torch.tensor(float(time.perf_counter() - start > budget_s), device=accelerator.device)
    return accelerator.reduce(over, reduction="sum").item() > 0
