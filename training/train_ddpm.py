"""Train an unconditional DDPM (Ho et al., 2020) on a folder of images, e.g. the 100 LFW faces.

    accelerate launch training/train_ddpm.py      # embedded MNIST-M subset as plain images, a minute
    accelerate launch training/train_ddpm.py --train_data ../shared/data/lfw_faces --channels 1 \\
        --resolution 32 --output_dir runs/ddpm-faces --max_train_steps 3000

`--train_data` is a folder of parquet files with an `image` column (files named train*.parquet are
preferred when present) or a folder of image files. The output folder is a `DDPMPipeline`:
unet/ (safetensors), scheduler/ (linear betas, `--num_train_timesteps`), model_index.json, README.md.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import datasets
import numpy as np
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline
from huggingface_hub import EvalResult
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `accelerate launch training/...` from the root

from pipelines.hub.cards import card_data, diffusion_usage_snippets, usage_section  # noqa: E402
from training.diffusion_trainer import (  # noqa: E402
    add_training_args,
    build_noise_scheduler,
    build_unet,
    check_training_args,
    make_grid,
    publish_folder,
    push_folder_to_hub,
    train_diffusion,
    write_model_card,
)

EMBEDDED_DIGITS = Path(__file__).resolve().parents[1] / "hub_cards" / "mnistm-mini" / "data"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_training_args(parser)
    parser.add_argument(
        "--train_data",
        type=Path,
        default=EMBEDDED_DIGITS,
        help="parquet folder (column `image`) or image folder; default: embedded MNIST-M subset",
    )
    parser.add_argument("--channels", type=int, choices=[1, 3], default=3, help="1 = greyscale, 3 = RGB")
    parser.add_argument("--sample_images", type=int, default=16, help="images in the logged sample grids")
    parser.add_argument(
        "--sample_inference_steps", type=int, default=50, help="DDIM steps of the logged grids"
    )
    parser.set_defaults(
        output_dir=Path("runs/ddpm"),
        resolution=32,
        num_train_timesteps=1000,
        block_out_channels=[16, 32, 64],
        max_train_steps=200,
        train_batch_size=32,
        lr_warmup_steps=50,
        checkpointing_steps=100,
        save_images_steps=100,
    )
    args = parser.parse_args(argv)
    check_training_args(args)
    return args


def _parquet_images(folder: Path) -> list[Image.Image]:
    files = sorted(folder.rglob("train*.parquet")) or sorted(folder.rglob("*.parquet"))
    table = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    if "image" not in table.column_names:
        raise ValueError(f"{folder}: parquet files have no `image` column (columns: {table.column_names})")
    raw = table.cast_column("image", datasets.Image(decode=False))["image"]
    return [
        Image.open(io.BytesIO(value["bytes"])) if value["bytes"] else Image.open(value["path"])
        for value in raw
    ]


def load_training_images(folder: Path, resolution: int, channels: int) -> torch.Tensor:
    """All images of `folder` as uint8 [N, channels, resolution, resolution] (bicubic resize)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--train_data {folder} is not a folder")
    if any(folder.rglob("*.parquet")):
        pictures = _parquet_images(folder)
    else:
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        pictures = [Image.open(p) for p in paths]
    if not pictures:
        raise FileNotFoundError(f"--train_data {folder} holds no parquet files and no images")
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(p.convert(mode).resize((resolution, resolution), Image.BICUBIC)) for p in pictures]
    stacked = torch.from_numpy(np.stack(arrays))
    return stacked.unsqueeze(1) if channels == 1 else stacked.permute(0, 3, 1, 2).contiguous()


def sample_grid_fn(noise_scheduler, args):
    def sample_grid(unet):
        pipe = DDIMPipeline(unet, DDIMScheduler.from_config(noise_scheduler.config))
        pipe.set_progress_bar_config(disable=True)
        was_training = unet.training
        unet.eval()
        images = pipe(
            batch_size=args.sample_images,
            num_inference_steps=args.sample_inference_steps,
            generator=torch.Generator().manual_seed(args.seed),
        ).images
        unet.train(was_training)
        return make_grid(images, columns=int(np.ceil(np.sqrt(args.sample_images))))

    return sample_grid


def model_card(args, result, num_images: int, num_params: int) -> tuple[dict, str]:
    """(front matter, body) of the output folder's card, a plain diffusers `DDPMPipeline`."""
    data_ref = str(args.train_data)
    hub_dataset = [data_ref] if len(data_ref.split("/")) == 2 and not Path(data_ref).exists() else []
    loss = EvalResult(task_type="unconditional-image-generation",
                      dataset_type=hub_dataset[0] if hub_dataset else "local",
                      dataset_name=f"{data_ref} (training images)", dataset_split="train", metric_type="loss",
                      metric_name="final training loss (noise MSE)", metric_value=round(float(result.final_loss), 4))
    data = card_data(library_name="diffusers", pipeline_tag="unconditional-image-generation", datasets=hub_dataset,
                     model_name=Path(args.output_dir).name, eval_results=[loss], metrics=["loss"],
                     tags=["diffusers", "ddpm", "unconditional-image-generation"])
    repo_snippet, library_snippet = diffusion_usage_snippets(str(args.output_dir), "DDPMPipeline")
    use = usage_section(repo_snippet, library_snippet, "diffusers")
    body = f"""
# Unconditional DDPM

A `UNet2DModel` ({num_params / 1e6:.2f}M parameters) trained by `training/train_ddpm.py` to predict the
noise of a {args.num_train_timesteps}-step DDPM schedule (linear betas {args.beta_start} -> {args.beta_end}).
The folder is a plain diffusers `DDPMPipeline` (no code of its own); `UNet2DModel.from_pretrained(folder,
subfolder="unet")` and `DDIMScheduler.from_pretrained(folder, subfolder="scheduler")` load its parts.

| setting | value |
|---|---|
| data | {args.train_data}: {num_images} images, {args.resolution} px, {args.channels} channel(s) |
| steps x images per step | {result.global_step} x {result.images_seen // max(result.global_step, 1)} \
({result.images_seen / num_images:.1f} epochs) |
| optimizer | AdamW lr {args.learning_rate}, {args.lr_scheduler}, {args.lr_warmup_steps} warm-up steps |
| EMA | max decay {args.ema_max_decay} (the saved weights) |
| UNet | block_out_channels {tuple(args.block_out_channels)}, layers_per_block {args.layers_per_block} |
| final training loss (metric) | {result.final_loss:.4f} |
| training time / processes | {result.seconds / 60:.1f} min / {result.num_processes} |

{use}
![samples](samples.png)

`samples.png`: DDIM {args.sample_inference_steps} steps, eta 0, seed {args.seed}.
"""
    return data.to_dict(), body


def main(args: argparse.Namespace) -> None:
    images = load_training_images(args.train_data, args.resolution, args.channels)
    torch.manual_seed(args.seed)
    unet = build_unet(args, channels=args.channels)
    noise_scheduler = build_noise_scheduler(args)
    sample_grid = sample_grid_fn(noise_scheduler, args)
    accelerator, result = train_diffusion(args, unet, noise_scheduler, images, None, sample_grid)
    if not accelerator.is_main_process:
        return

    staging = args.output_dir / ".export"
    DDPMPipeline(result.unet.eval(), noise_scheduler).save_pretrained(staging, safe_serialization=True)
    sample_grid(result.unet).save(staging / "samples.png")
    (staging / "training_args.json").write_text(
        json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, indent=2) + "\n"
    )
    num_params = sum(p.numel() for p in result.unet.parameters())
    write_model_card(staging / "README.md", *model_card(args, result, len(images), num_params))
    publish_folder(staging, args.output_dir)
    accelerator.print(f"saved the pipeline to {args.output_dir}")
    if args.push_to_hub:
        accelerator.print(f"pushed: {push_folder_to_hub(args.output_dir, args.hub_model_id)}")


if __name__ == "__main__":
    main(parse_args())
