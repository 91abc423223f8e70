"""Train an unconditional DDPM (Ho et al., 2020) on a folder of images, e.g. the 100 LFW faces.

    accelerate launch training/train_ddpm.py      # embedded MNIST-M subset as plain images, a minute
    accelerate launch training/train_ddpm.py --train_data ../shared/data/lfw_faces --channels 1 \\
        --resolution 32 --output_dir runs/ddpm-faces --max_train_steps 3000

`--train_data` is a folder of parquet files with an `image` column (files named train*.parquet are
preferred when present) or a folder of image files. The output folder is a `DDPMPipeline`:
unet/ (safetensors), scheduler/ (linear betas, `--num_train_timesteps`), model_index.json, README.md.
The loop is training/diffusion/loop.py, shared with train_cfg.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import datasets
import numpy as np
import torch
from diffusers import DDPMPipeline
from PIL import Image

from adapters.digit_sources import DigitSourceError
from adapters.digits import open_image
from training.diffusion.args import (
    add_training_args,
    add_unconditional_args,
    build_noise_scheduler,
    check_training_args,
)
from training.diffusion.cards import write_ddpm_card
from training.diffusion.export import TrainResult
from training.diffusion.loop import ModelKind, train_diffusion
from training.diffusion.samples import square_grid_drawer

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(parser)
    add_unconditional_args(parser)
    args = parser.parse_args(argv)
    check_training_args(args)
    return args


def _decoded(value: dict, index: int) -> Image.Image:
    """One image, fully decoded now, so that a corrupt file is named before any training work."""
    try:
        return open_image(value, index)
    except DigitSourceError as error:
        raise ValueError(f"--train_data {error}") from error
    except Image.DecompressionBombError as error:
        raise ValueError(f"--train_data row {index}: {value.get('path') or 'image'} is too large ({error})") from error


def _parquet_images(folder: Path) -> list[Image.Image]:
    files = sorted(folder.rglob("train*.parquet")) or sorted(folder.rglob("*.parquet"))
    table = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    if "image" not in table.column_names:
        raise ValueError(f"{folder}: parquet files have no `image` column (columns: {table.column_names})")
    raw = table.cast_column("image", datasets.Image(decode=False))["image"]
    return [_decoded(value, index) for index, value in enumerate(raw)]


def load_training_images(folder: Path, resolution: int, channels: int) -> torch.Tensor:
    """All images of `folder` as uint8 [N, channels, resolution, resolution] (bicubic resize)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--train_data {folder} is not a folder")
    if any(folder.rglob("*.parquet")):
        pictures = _parquet_images(folder)
    else:
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        pictures = [_decoded({"path": str(path)}, index) for index, path in enumerate(paths)]
    if not pictures:
        raise FileNotFoundError(f"--train_data {folder} holds no parquet files and no images")
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(p.convert(mode).resize((resolution, resolution), Image.BICUBIC)) for p in pictures]
    stacked = torch.from_numpy(np.stack(arrays))
    return stacked.unsqueeze(1) if channels == 1 else stacked.permute(0, 3, 1, 2).contiguous()


def main(args: argparse.Namespace) -> TrainResult:
    noise_scheduler = build_noise_scheduler(args)
    kind = ModelKind(
        script="train_ddpm.py",
        channels=args.channels,
        draw_grid=square_grid_drawer(noise_scheduler, args),
        save_pipeline=lambda unet, folder: DDPMPipeline(unet, noise_scheduler).save_pretrained(
            folder, safe_serialization=True
        ),
        write_card=lambda folder: write_ddpm_card(folder, location=args.output_dir),
        random_flip=args.random_flip,
    )
    return train_diffusion(
        args, kind, load_data=lambda: (load_training_images(args.train_data, args.resolution, args.channels), None)
    )


if __name__ == "__main__":
    from pipelines.command_line import run_command  # user errors: one line on stderr, exit status 2

    run_command(main, parse_args)
