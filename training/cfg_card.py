"""Rewrite the model card of a conditional-DDPM folder from its records, once measurements exist.

    python -m training.cfg_card --folder hub_cards/cfg-mnistm --evaluations docs/benchmarks/samplers_cpu.json

A folder written by `training/train_cfg.py` holds `training_args.json` (every argument, so the run can be
repeated) and `train_summary.json` (steps reached, images seen, loss, time, hardware). `train_cfg.py` writes the
card from those two at the end of training; this command rewrites it with the accuracy of generated digits per
sampler (`benchmarks/bench_samplers.py` output) as `eval_results`. The card itself is built by
training/diffusion/cards.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from PIL import Image

from training.diffusion.args import conditional_defaults
from training.diffusion.cards import training_flags, write_conditional_ddpm_card


def write_grid(folder: Path, steps: int) -> Path:
    """grid.png: 10 samples of each digit with the fast sampler, the picture a Hub visitor looks at first."""
    from diffusers.utils import make_image_grid

    from pipelines.conditional_ddpm import ConditionalDDPMPipeline, make_scheduler

    pipe = ConditionalDDPMPipeline.from_pretrained(folder)
    pipe.scheduler = make_scheduler("dpm", pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        digit=list(range(10)),
        guidance=2.0,
        num_images_per_digit=10,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
    ).images
    path = Path(folder) / "grid.png"
    make_image_grid([image.resize((56, 56), Image.NEAREST) for image in images], rows=10, cols=10).save(path)
    return path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, required=True, help="a train_cfg.py output folder")
    parser.add_argument("--evaluations", type=Path, default=None, help="benchmarks/bench_samplers.py JSON")
    parser.add_argument("--repo", default=None, help="the Hub id or path shown in the usage snippets")
    parser.add_argument("--fast_steps", type=int, default=10, help="DPM-Solver steps shown in the snippets")
    parser.add_argument("--write_grid", action="store_true", help="(re)draw grid.png with the fast sampler first")
    parser.add_argument(
        "--print_flags",
        action="store_true",
        help="only print the folder's train_cfg.py flags on one line, for "
        "`accelerate launch training/train_cfg.py $(python -m training.cfg_card --folder F "
        "--print_flags)`",
    )
    args = parser.parse_args(argv)
    for name in ("training_args.json", "train_summary.json", "model_index.json"):
        if not (args.folder / name).is_file():
            raise FileNotFoundError(f"{args.folder} has no {name}: is it a train_cfg.py output folder?")
    if args.evaluations is not None and not args.evaluations.is_file():
        raise FileNotFoundError(f"--evaluations {args.evaluations} does not exist")
    return args


def main(args) -> Path | None:
    if args.print_flags:
        training_args = json.loads((args.folder / "training_args.json").read_text())
        print(" ".join(training_flags(training_args, conditional_defaults())))
        return None
    if args.write_grid:
        write_grid(args.folder, args.fast_steps)
    report = json.loads(args.evaluations.read_text()) if args.evaluations else {"results": [], "device": ""}
    write_conditional_ddpm_card(
        args.folder,
        evaluations=report["results"],
        device=report.get("device", ""),
        repo=args.repo,
        fast_steps=args.fast_steps,
    )
    print(f"wrote {args.folder / 'README.md'}")
    return args.folder / "README.md"


if __name__ == "__main__":
    from pipelines.command_line import run_command

    run_command(main, parse_args)
