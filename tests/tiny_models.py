"""Real diffusers models at tiny sizes for the tests (as diffusers' own tests build them), seeded: fast on a CPU.

from tests.tiny_models import tiny_unet, tiny_cfg_folder
"""

from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel

from pipelines import ConditionalDDPMPipeline


def tiny_unet(
    channels: int = 3, num_class_embeds: int | None = None, attention: bool = False, sample_size: int = 8
) -> UNet2DModel:
    """A `UNet2DModel` (8x8 by default) of two levels (8 and 16 channels); `attention` puts self-attention in the
    lower one, `num_class_embeds` makes it class-conditional (11: digits 0-9 and the null class)."""
    torch.manual_seed(0)
    lower = ("AttnDownBlock2D", "AttnUpBlock2D") if attention else ("DownBlock2D", "UpBlock2D")
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", lower[0]),
        up_block_types=(lower[1], "UpBlock2D"),
        num_class_embeds=num_class_embeds,
    )


def tiny_cfg_folder(folder: Path, num_train_timesteps: int = 400, attention: bool = True) -> Path:
    """A saved `ConditionalDDPMPipeline` (RGB digits, null class 10, a DDPM schedule) in `folder`."""
    unet = tiny_unet(num_class_embeds=11, attention=attention)
    scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps)
    ConditionalDDPMPipeline(unet, scheduler, null_class_id=10).save_pretrained(folder)
    return folder
