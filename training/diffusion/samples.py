"""Sample grids (the logged ones and the exported samples.png) and the time budget of the training loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel
from diffusers.utils import make_image_grid
from PIL import Image

from pipelines.conditional_ddpm.pipeline_conditional_ddpm import NUM_DIGITS, ConditionalDDPMPipeline

GridDrawer = Callable[[UNet2DModel], Image.Image]


def _in_eval_mode(unet: UNet2DModel, draw: Callable[[], list[Image.Image]]) -> list[Image.Image]:
    was_training = unet.training
    unet.eval()
    try:
        return draw()
    finally:
        unet.train(was_training)


def digit_rows_drawer(noise_scheduler, null_class_id: int, args) -> GridDrawer:
    """unet -> digits 0-9 in rows, `--sample_images_per_digit` each, guided DDIM with `--sample_guidance`,
    `--sample_inference_steps` steps and a fixed seed."""

    def draw(unet: UNet2DModel) -> Image.Image:
        pipe = ConditionalDDPMPipeline(unet, DDIMScheduler.from_config(noise_scheduler.config), null_class_id)
        pipe.set_progress_bar_config(disable=True)
        images = _in_eval_mode(
            unet,
            lambda: (
                pipe(
                    digit=list(range(NUM_DIGITS)),
                    guidance=args.sample_guidance,
                    num_images_per_digit=args.sample_images_per_digit,
                    num_inference_steps=args.sample_inference_steps,
                    generator=torch.Generator().manual_seed(args.seed),
                ).images
            ),
        )
        return make_image_grid(images, rows=NUM_DIGITS, cols=args.sample_images_per_digit)

    return draw


def square_grid_drawer(noise_scheduler, args) -> GridDrawer:
    """unet -> `--sample_images` unconditional DDIM samples in a near-square grid, fixed seed."""

    def draw(unet: UNet2DModel) -> Image.Image:
        pipe = DDIMPipeline(unet, DDIMScheduler.from_config(noise_scheduler.config))
        pipe.set_progress_bar_config(disable=True)
        images = _in_eval_mode(
            unet,
            lambda: (
                pipe(
                    batch_size=args.sample_images,
                    num_inference_steps=args.sample_inference_steps,
                    generator=torch.Generator().manual_seed(args.seed),
                ).images
            ),
        )
        columns = int(np.ceil(np.sqrt(args.sample_images)))
        rows = int(np.ceil(args.sample_images / columns))
        # make_image_grid wants a full grid: pad the last row with black tiles
        images += [Image.new(images[0].mode, images[0].size)] * (rows * columns - len(images))
        return make_image_grid(images, rows=rows, cols=columns)

    return draw


def log_sample_grid(accelerator, unet, ema, draw_grid: GridDrawer, output_dir: Path, step: int) -> None:
    """Draw a grid with the EMA weights on the main process; save it and send it to TensorBoard."""
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(unet, keep_torch_compile=False)
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
        grid = draw_grid(model)
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
