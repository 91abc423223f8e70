"""The student folder's samples.png: one row per digit 0-9, at the folder's default steps."""

from __future__ import annotations

import torch
from diffusers.utils import make_image_grid

from pipelines.conditional_ddpm.pipeline_conditional_ddpm import NUM_DIGITS

PER_DIGIT = 10


def student_grid(pipeline, seed: int = 0):
    """10 x 10 digits from `pipeline(digit=...)` with no other arguments than the images and a seed."""
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(
        digit=list(range(NUM_DIGITS)), num_images_per_digit=PER_DIGIT, generator=torch.Generator().manual_seed(seed)
    ).images
    return make_image_grid(images, NUM_DIGITS, PER_DIGIT)
