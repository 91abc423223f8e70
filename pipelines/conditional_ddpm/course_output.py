"""Course output for the conditional DDPM: `{digit}_{001..100}.png` for the digits 0-9.

    python -m pipelines.conditional_ddpm --pretrained hub_cards/cfg-mnistm --output_dir out/
    python -m pipelines.conditional_ddpm --pretrained hub_cards/cfg-mnistm --output_dir out/ --scheduler ddim

Each file is a 28x28 RGB PNG (the model's sample size) whose name starts with its digit, the layout the
course's digit classifier grades. `--guidance` is the report's w (diffusers' guidance_scale = 1 + w).
Each digit draws its noise from its own generator, seeded by (`--seed`, digit), and batches never mix
digits, so the images of a digit depend only on the seed and `--batch_size`: `--digits` can split the work
over several processes without changing the files.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from adapters.folders import check_output_dir, write_folder_atomically
from pipelines.command_line import check_pretrained, run_command
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import NUM_DIGITS, ConditionalDDPMPipeline
from pipelines.conditional_ddpm.schedulers import SCHEDULERS, default_steps, make_scheduler


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pretrained",
        type=Path,
        default=Path("hub_cards/cfg-mnistm"),
        help="a ConditionalDDPMPipeline folder",
    )
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--guidance", type=float, default=2.0, help="w in eps = (1+w) eps(c) - w eps(null)")
    parser.add_argument("--images_per_digit", type=int, default=100)
    parser.add_argument(
        "--num_inference_steps",
        type=int,
        default=None,
        help="default: all training steps for ddpm, 50 for ddim, 10 for dpm and unipc",
    )
    parser.add_argument(
        "--digits",
        type=int,
        nargs="+",
        default=list(range(NUM_DIGITS)),
        help="which digits to write (default: all ten)",
    )
    parser.add_argument("--scheduler", choices=sorted(SCHEDULERS), default="ddpm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=100, help="images of one digit per pipeline call")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output_dir")
    args = parser.parse_args(argv)
    if args.images_per_digit < 1:
        raise ValueError(f"--images_per_digit must be >= 1, got {args.images_per_digit}")
    if not all(0 <= digit < NUM_DIGITS for digit in args.digits):
        raise ValueError(f"--digits must be in 0-{NUM_DIGITS - 1}, got {args.digits}")
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    if not math.isfinite(args.guidance) or args.guidance < 0:
        raise ValueError(f"--guidance must be a finite w >= 0, got {args.guidance}")
    if args.num_inference_steps is not None and args.num_inference_steps < 1:
        raise ValueError(f"--num_inference_steps must be >= 1, got {args.num_inference_steps}")
    check_pretrained(args.pretrained, hub=False)
    if not (args.pretrained / "model_index.json").is_file():
        raise FileNotFoundError(
            f"--pretrained {args.pretrained} is not a pipeline folder (no model_index.json); "
            "the shipped ones are hub_cards/cfg-mnistm and hub_cards/cfg-mnistm-small"
        )
    check_output_dir(args.output_dir, args.overwrite)
    return args


def main(args: argparse.Namespace) -> list[Path]:
    pipe = ConditionalDDPMPipeline.from_pretrained(args.pretrained)
    pipe.scheduler = make_scheduler(args.scheduler, pipe.scheduler.config)
    pipe.to(torch.device(args.device))
    pipe.set_progress_bar_config(disable=True)
    steps = args.num_inference_steps
    if steps is None:
        steps = default_steps(args.scheduler, pipe.scheduler.config.num_train_timesteps)


    def write_digits(staging: Path) -> list[str]:
        names = []
        for digit in tqdm(args.digits, desc="digits"):
            generator = torch.Generator().manual_seed(args.seed * 1000 + digit)
            for start in range(1, args.images_per_digit + 1, args.batch_size):
                indices = range(start, min(start + args.batch_size, args.images_per_digit + 1))
                images = pipe(
                    digit=digit,
                    guidance=args.guidance,
                    num_images_per_digit=len(indices),
                    num_inference_steps=steps,
                    generator=generator,
                ).images
                for index, image in zip(indices, images, strict=True):
                    names.append(f"{digit}_{index:03d}.png")
                    image.convert("RGB").save(staging / names[-1])
        return names

    names = write_folder_atomically(args.output_dir, write_digits)
    return [args.output_dir / name for name in names]


def cli(argv=None):
    return run_command(main, parse_args, argv)


if __name__ == "__main__":
    cli()
