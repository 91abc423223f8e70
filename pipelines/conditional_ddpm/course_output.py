"""Course output for the conditional DDPM: `{digit}_{001..100}.png` for the digits 0-9.

    python -m pipelines.conditional_ddpm --output_dir out/                              # the shipped cfg-mnistm
    python -m pipelines.conditional_ddpm --pretrained cfg-mnistm-small --output_dir out/ --scheduler ddim

Each file is a 28x28 RGB PNG (the model's sample size) whose name starts with its digit, the layout the
course's digit classifier grades. `--guidance` is the report's w (diffusers' guidance_scale = 1 + w).

Sampler: the folder's own scheduler and the steps it needs, unless --scheduler / --num_inference_steps say
otherwise. The shipped folders store DPM-Solver++, so the default is 10 DPM-Solver++ steps (1.000 of 1000 digits
correct for cfg-mnistm); `--scheduler ddpm` is the report's ancestral sampler with all 400 trained steps.

Batches mix digits (up to `--batch_size` images per pipeline call, 1000 on a GPU), so a GPU runs the course's
1000 images as one batch. The starting noise x_T of `{digit}_{index}.png` comes from its own generator, seeded
by (`--seed`, digit, index), so with the deterministic samplers (ddim, dpm, unipc) every file depends only on
those three (up to float rounding in batched convolutions): `--digits` can split the work over processes and
`--batch_size` can change without changing the images. `ddpm` also draws noise at every step, from one
generator per batch, so its files depend on the batches.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm.auto import tqdm

from adapters.folders import check_output_dir, write_folder_atomically
from pipelines.command_line import check_seed, resolve_pretrained, run_command
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import NUM_DIGITS, ConditionalDDPMPipeline
from pipelines.conditional_ddpm.schedulers import SCHEDULERS, make_scheduler
from pipelines.model_folders import check_pipeline_folder, read_json_object
from pipelines.seeds import step_noise_generator

# how the pipeline's rules name this command's flags in their messages
FLAGS = {"guidance": "--guidance", "num_inference_steps": "--num_inference_steps"}
# The seed of image (seed, digit, index) is (seed * 10 + digit) * MAX_IMAGES_PER_DIGIT + index: distinct for all.
MAX_IMAGES_PER_DIGIT = 100_000


def image_seed(seed: int, digit: int, index: int) -> int:
    """The seed of the starting noise of `{digit}_{index:03d}.png`."""
    return (seed * NUM_DIGITS + digit) * MAX_IMAGES_PER_DIGIT + index


def starting_noise(jobs: list[tuple[int, int]], seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """x_T for each (digit, index) of `jobs`, drawn on the CPU from the image's own generator: the same on any
    device and in any batch."""
    return torch.stack(
        [torch.randn(shape, generator=torch.Generator().manual_seed(image_seed(seed, d, i))) for d, i in jobs]
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model and guidance arguments of every command that samples digits (this one and the figures)."""
    parser.add_argument(
        "--pretrained",
        default="cfg-mnistm",
        help="a ConditionalDDPMPipeline folder, or a shipped model's name (cfg-mnistm, cfg-mnistm-small, "
        "cfg-mnistm-fast: the distilled 2-step student)",
    )
    parser.add_argument("--guidance", type=float, default=2.0, help="w in eps = (1+w) eps(c) - w eps(null)")


def check_model_arguments(args: argparse.Namespace) -> None:
    """The model, guidance, steps and seed, checked before the model loads; a shipped name becomes its folder."""
    check_seed(args.seed)
    args.pretrained = resolve_pretrained(args.pretrained, hub=False)
    if not (Path(args.pretrained) / "model_index.json").is_file():
        raise FileNotFoundError(
            f"--pretrained {args.pretrained} is not a pipeline folder (no model_index.json); "
            "the shipped ones are cfg-mnistm, cfg-mnistm-small and cfg-mnistm-fast"
        )
    check_pipeline_folder(args.pretrained, "ConditionalDDPMPipeline")
    ConditionalDDPMPipeline.check_call_arguments(
        args.pretrained, guidance=args.guidance, num_inference_steps=args.num_inference_steps, spelling=FLAGS
    )
    check_distilled_student_arguments(args)


def check_distilled_student_arguments(args: argparse.Namespace) -> None:
    """A distilled student (train_distill.py) samples with its own LCMScheduler: another sampler would give wrong
    images, so it is refused before the student loads (its built-in w is the pipeline's rule)."""
    index = read_json_object(Path(args.pretrained) / "model_index.json")
    if index.get("distilled_guidance") is None:
        return
    if getattr(args, "scheduler", None) is not None:
        raise ValueError(
            f"--pretrained {args.pretrained} is a distilled student: it samples with its own LCMScheduler, not "
            f"--scheduler {args.scheduler}; leave --scheduler out"
        )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--images_per_digit", type=int, default=100)
    parser.add_argument(
        "--num_inference_steps",
        type=int,
        default=None,
        help="default: the steps the scheduler needs: 10 for the folder's DPM-Solver++ (and for dpm, unipc), "
        "50 for ddim, all trained steps for ddpm",
    )
    parser.add_argument(
        "--digits",
        type=int,
        nargs="+",
        default=list(range(NUM_DIGITS)),
        help="which digits to write, each named once (default: all ten); a repeated digit is refused, since its "
        "files {d}_001.png ... would be written twice",
    )
    parser.add_argument(
        "--scheduler",
        choices=sorted(SCHEDULERS),
        default=None,
        help="default: the folder's own scheduler (DPM-Solver++ in the shipped folders)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="images per pipeline call, digits mixed (default: 1000 on a GPU; 100 on the CPU, no slower)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output_dir")
    args = parser.parse_args(argv)
    if args.images_per_digit < 1:
        raise ValueError(f"--images_per_digit must be >= 1, got {args.images_per_digit}")
    if not all(0 <= digit < NUM_DIGITS for digit in args.digits):
        raise ValueError(f"--digits must be in 0-{NUM_DIGITS - 1}, got {args.digits}")
    repeated = sorted({digit for digit in args.digits if args.digits.count(digit) > 1})
    if repeated:
        raise ValueError(
            f"--digits names {', '.join(map(str, repeated))} more than once; each digit's files are written once "
            "(use --images_per_digit for more images of a digit)"
        )
    if args.batch_size is None:
        args.batch_size = 100 if args.device == "cpu" else 1000
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.images_per_digit > MAX_IMAGES_PER_DIGIT:
        raise ValueError(f"--images_per_digit must be <= {MAX_IMAGES_PER_DIGIT}, got {args.images_per_digit}")
    check_model_arguments(args)
    check_output_dir(args.output_dir, args.overwrite, inputs=(args.pretrained,))
    return args


def main(args: argparse.Namespace) -> list[Path]:
    pipe = ConditionalDDPMPipeline.from_pretrained(args.pretrained)
    if args.scheduler is not None:
        pipe.scheduler = make_scheduler(args.scheduler, pipe.scheduler.config)
    pipe.to(torch.device(args.device))
    pipe.set_progress_bar_config(disable=True)

    jobs = [(digit, index) for digit in args.digits for index in range(1, args.images_per_digit + 1)]
    shape = pipe.sample_shape()

    def write_digits(staging: Path) -> list[str]:
        names = []
        for start in tqdm(range(0, len(jobs), args.batch_size), desc=f"batches of {args.batch_size}"):
            batch = jobs[start : start + args.batch_size]
            # step noise (ddpm only): one generator per batch, on the device so that no step waits on the host
            step_generator = step_noise_generator(image_seed(args.seed, *batch[0]), device=pipe.device)
            images = pipe(
                digit=[digit for digit, _ in batch],
                guidance=args.guidance,
                num_inference_steps=args.num_inference_steps,  # None: the scheduler's own
                latents=starting_noise(batch, args.seed, shape),
                generator=step_generator,
            ).images
            for (digit, index), image in zip(batch, images, strict=True):
                names.append(f"{digit}_{index:03d}.png")
                image.convert("RGB").save(staging / names[-1])
        return names

    names = write_folder_atomically(args.output_dir, write_digits)
    return [args.output_dir / name for name in names]


def cli(argv=None) -> None:
    run_command(main, parse_args, argv)


if __name__ == "__main__":
    cli()
