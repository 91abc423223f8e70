"""Train a class-conditional DDPM with classifier-free guidance on MNIST-M digits.

    accelerate launch training/train_cfg.py      # embedded MNIST-M subset, a few CPU minutes
    accelerate launch --multi_gpu --num_processes 2 training/train_cfg.py ...   # 2 CPU processes or 2 GPUs

The recipe of the shipped hub_cards/cfg-mnistm is in its README.md (`training_args.json` beside it).

The UNet sees 11 classes: digits 0-9 and a null class (id 10, stored as the pipeline's `null_class_id`)
that replaces the label with probability `--label_dropout` (0.1, as in the report) so that one network
learns both eps(x, c) and eps(x, null). The result is a `ConditionalDDPMPipeline` folder (model_index.json,
unet/ in safetensors, scheduler/) with a model card and a sample grid.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import diffusers
import torch
from diffusers import DDIMScheduler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `accelerate launch training/...` from the root

from adapters import decode_digits, load_digits  # noqa: E402
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import NUM_DIGITS, ConditionalDDPMPipeline  # noqa: E402
from training.cfg_card import build_card, write_card  # noqa: E402
from training.diffusion_trainer import (  # noqa: E402
    add_training_args,
    build_noise_scheduler,
    build_unet,
    check_training_args,
    make_grid,
    publish_folder,
    push_folder_to_hub,
    train_diffusion,
)

NULL_CLASS_ID = NUM_DIGITS  # label 10 = "no label"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_training_args(parser)
    parser.add_argument(
        "--train_data",
        default=None,
        help="MNIST-M source for adapters.load_digits (parquet folder, course layout, Hub id); "
        "default: the embedded subset hub_cards/mnistm-mini",
    )
    parser.add_argument("--label_dropout", type=float, default=0.1, help="probability of the null label")
    parser.add_argument("--max_train_images", type=int, default=None, help="use only the first N images")
    parser.add_argument("--sample_guidance", type=float, default=2.0, help="w of the logged sample grids")
    parser.add_argument("--sample_images_per_digit", type=int, default=4)
    parser.add_argument(
        "--sample_inference_steps", type=int, default=50, help="DDIM steps of the logged grids"
    )
    parser.set_defaults(
        output_dir=Path("runs/cfg-mnistm"),
        resolution=28,
        num_train_timesteps=400,
        # The shipped model's UNet (0.17M parameters): small enough that 1000 digits x 400 guided
        # steps run on one CPU core in about half an hour.
        block_out_channels=[8, 16, 32],
        norm_num_groups=4,
        learning_rate=2e-3,
        lr_warmup_steps=300,
        max_train_steps=600,
        train_batch_size=64,
        checkpointing_steps=200,
        save_images_steps=300,
    )
    args = parser.parse_args(argv)
    if not 0 <= args.label_dropout < 1:
        raise ValueError(f"--label_dropout must be in [0, 1), got {args.label_dropout}")
    check_training_args(args)
    return args


def sample_grid_fn(noise_scheduler, args):
    """Digits 0-9 in rows, a few samples each, with fast DDIM sampling and a fixed seed."""

    def sample_grid(unet):
        pipe = ConditionalDDPMPipeline(unet, DDIMScheduler.from_config(noise_scheduler.config), NULL_CLASS_ID)
        pipe.set_progress_bar_config(disable=True)
        was_training = unet.training
        unet.eval()
        images = pipe(
            digit=list(range(NUM_DIGITS)),
            guidance=args.sample_guidance,
            num_images_per_digit=args.sample_images_per_digit,
            num_inference_steps=args.sample_inference_steps,
            generator=torch.Generator().manual_seed(args.seed),
        ).images
        unet.train(was_training)
        return make_grid(images, columns=args.sample_images_per_digit)

    return sample_grid


def run_summary(args, result, num_images: int, num_params: int, accelerator) -> dict:
    """What the model card needs to know about this run beside its arguments (training_args.json)."""
    summary = {k: v for k, v in vars(result).items() if k != "unet"}
    device = accelerator.device
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"
    summary.update(
        num_images=num_images,
        num_params=num_params,
        data=args.train_data or "hub_cards/mnistm-mini (the embedded 2,000-image subset)",
        hardware=f"{accelerator.num_processes} x {hardware}; PyTorch {torch.__version__}, diffusers "
                 f"{diffusers.__version__}, {args.mixed_precision} mixed precision",
        samples_caption=f"rows are digits 0-9, DDIM {args.sample_inference_steps} steps, w = {args.sample_guidance}, "
                        f"seed {args.seed}.",
    )
    return summary


def main(args: argparse.Namespace) -> None:
    dataset = load_digits("mnistm", source=args.train_data, split="train")
    images, labels = decode_digits(dataset, image_size=args.resolution)
    if args.max_train_images is not None:
        images, labels = images[: args.max_train_images], labels[: args.max_train_images]

    torch.manual_seed(args.seed)
    unet = build_unet(args, channels=3, num_class_embeds=NUM_DIGITS + 1)
    noise_scheduler = build_noise_scheduler(args)
    sample_grid = sample_grid_fn(noise_scheduler, args)
    accelerator, result = train_diffusion(
        args,
        unet,
        noise_scheduler,
        images,
        labels,
        sample_grid,
        label_dropout=args.label_dropout,
        null_class_id=NULL_CLASS_ID,
    )
    if not accelerator.is_main_process:
        return

    staging = args.output_dir / ".export"
    pipeline = ConditionalDDPMPipeline(result.unet.eval(), noise_scheduler, NULL_CLASS_ID)
    pipeline.save_pretrained(staging, safe_serialization=True)
    sample_grid(result.unet).save(staging / "samples.png")
    (staging / "training_args.json").write_text(
        json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, indent=2) + "\n"
    )
    num_params = sum(p.numel() for p in result.unet.parameters())
    summary = run_summary(args, result, len(images), num_params, accelerator)
    (staging / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_card(staging, build_card(staging, repo=args.hub_model_id))
    publish_folder(staging, args.output_dir)
    accelerator.print(f"saved the pipeline to {args.output_dir}")
    if args.push_to_hub:
        accelerator.print(f"pushed: {push_folder_to_hub(args.output_dir, args.hub_model_id)}")


if __name__ == "__main__":
    from pipelines.command_line import run_command  # user errors: one line on stderr, exit status 2

    run_command(main, parse_args)
