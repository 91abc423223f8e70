"""Train a class-conditional DDPM with classifier-free guidance on MNIST-M digits.

    accelerate launch training/train_cfg.py      # embedded MNIST-M subset, a few CPU minutes
    accelerate launch --multi_gpu --num_processes 2 training/train_cfg.py ...   # 2 CPU processes or 2 GPUs

The recipe of the shipped hub_cards/cfg-mnistm is in its README.md (`training_args.json` beside it).

The UNet sees 11 classes: digits 0-9 and a null class (id 10, stored as the pipeline's `null_class_id`)
that replaces the label with probability `--label_dropout` (0.1, as in the report) so that one network
learns both eps(x, c) and eps(x, null). The result is a `ConditionalDDPMPipeline` folder (model_index.json,
unet/ in safetensors, scheduler/: DPM-Solver++ on the trained schedule, the default sampler) with a model card
and a sample grid. The loop is training/diffusion/loop.py, shared with train_ddpm.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from adapters import decode_digits, load_digits
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import NUM_DIGITS, ConditionalDDPMPipeline
from pipelines.conditional_ddpm.schedulers import make_scheduler
from training.diffusion.args import add_conditional_args, add_training_args, build_noise_scheduler, check_training_args
from training.diffusion.cards import write_conditional_ddpm_card
from training.diffusion.export import TrainResult
from training.diffusion.loop import ModelKind, train_diffusion
from training.diffusion.samples import digit_rows_drawer

NULL_CLASS_ID = NUM_DIGITS  # label 10 = "no label"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(parser)
    add_conditional_args(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.label_dropout < 1:
        raise ValueError(f"--label_dropout must be in [0, 1), got {args.label_dropout}")
    check_training_args(args)
    return args


def load_digit_data(args) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-M training images (uint8, resized) and their labels."""
    images, labels = decode_digits(load_digits("mnistm", source=args.train_data, split="train"), args.resolution)
    if args.max_train_images is not None:
        images, labels = images[: args.max_train_images], labels[: args.max_train_images]
    return images, labels


def main(args: argparse.Namespace) -> TrainResult:
    noise_scheduler = build_noise_scheduler(args)

    def save_pipeline(unet, folder: Path) -> None:
        # The folder's scheduler is the sampler `pipe(digit=3)` uses: DPM-Solver++ on the trained schedule, good
        # digits in 10 steps; `make_scheduler("ddpm", pipe.scheduler.config)` restores the training sampler.
        pipeline = ConditionalDDPMPipeline(unet, make_scheduler("dpm", noise_scheduler.config), NULL_CLASS_ID)
        pipeline.save_pretrained(folder, safe_serialization=True)

    kind = ModelKind(
        script="train_cfg.py",
        channels=3,
        draw_grid=digit_rows_drawer(noise_scheduler, NULL_CLASS_ID, args),
        save_pipeline=save_pipeline,
        write_card=lambda folder: write_conditional_ddpm_card(folder, repo=args.hub_model_id, location=args.output_dir),
        null_class_id=NULL_CLASS_ID,
        label_dropout=args.label_dropout,
        summary={
            "data": args.train_data or "hub_cards/mnistm-mini (the embedded 2,000-image subset)",
            "samples_caption": f"rows are digits 0-9, DDIM {args.sample_inference_steps} steps, "
            f"w = {args.sample_guidance}, seed {args.seed}.",
        },
        output_names=("pipeline_conditional_ddpm.py",),  # the pipeline's code, for trust_remote_code
    )
    return train_diffusion(args, kind, load_data=lambda: load_digit_data(args))


if __name__ == "__main__":
    from pipelines.command_line import run_command  # user errors: one line on stderr, exit status 2

    run_command(main, parse_args)
