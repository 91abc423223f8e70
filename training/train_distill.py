"""Distil the guided teacher `cfg-mnistm` into a few-step student: 1000 digits in seconds on a CPU.

    accelerate launch training/train_distill.py --output_dir runs/cfg-mnistm-fast      # the shipped recipe
    accelerate launch training/train_distill.py ... --resume_from_checkpoint latest     # continue a stopped run

Two phases, both resumable:
1. Teacher paths (training/distill/trajectories.py): the teacher samples `--num_paths` digits with DPM-Solver++
   (`--solver_steps` steps at guidance `--guidance`) from seeded noise and records every state of its solver and
   the end point, in shards under `--paths_dir` that a restarted run reuses.
2. Student: a UNet (started from `--student_init`, the small shipped model) learns to map a recorded state
   (x_t, t, digit) to the teacher's end point, with the boundary condition of diffusers' `LCMScheduler`
   (Song et al., 2023; the guidance is built in, as in Meng et al., 2023). The last shard is held out and its
   loss is logged.

The result is a `ConditionalDDPMPipeline` folder whose scheduler is an `LCMScheduler` on the teacher's schedule
and whose `model_index.json` records the built-in guidance and the default steps, so `pipe(digit=3)` takes
`--default_steps` UNet forwards and nothing else.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.command_line import check_seed, resolve_pretrained
from training.distill.loop import train_student


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="cfg-mnistm", help="a ConditionalDDPMPipeline folder or shipped name")
    parser.add_argument("--student_init", default="cfg-mnistm-small", help="the folder whose UNet it starts as")
    parser.add_argument("--guidance", type=float, default=2.0, help="w built into the student")
    parser.add_argument("--solver_steps", type=int, default=10, help="teacher DPM-Solver++ steps (the student's grid)")
    parser.add_argument("--num_paths", type=int, default=13000, help="teacher paths; the last shard is held out")
    parser.add_argument("--shard_size", type=int, default=1000)
    parser.add_argument("--teacher_batch_size", type=int, default=100)
    parser.add_argument("--paths_dir", type=Path, default=None, help="default: OUTPUT_DIR-teacher-paths beside it")
    parser.add_argument("--output_dir", type=Path, default=Path("runs/cfg-mnistm-fast"))
    parser.add_argument("--default_steps", type=int, default=2, help="the steps pipe(digit=3) takes")
    parser.add_argument("--train_batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=2e-4)
    parser.add_argument("--lr_warmup_steps", type=int, default=100)
    parser.add_argument("--max_train_steps", type=int, default=3000)
    parser.add_argument("--max_train_seconds", type=float, default=None, help="stop (and export) after this long")
    parser.add_argument("--ema_decay", type=float, default=0.995)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--checkpointing_steps", type=int, default=250)
    parser.add_argument("--checkpoints_total_limit", type=int, default=2)
    parser.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint-N folder")
    parser.add_argument("--logging_steps", type=int, default=50)
    parser.add_argument("--validation_size", type=int, default=512, help="held-out (path, state) pairs per check")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    check_distill_args(args)
    return args


def check_distill_args(args: argparse.Namespace) -> None:
    """Every flag checked before any work; a bad one is a one-line error naming it."""
    check_seed(args.seed)
    positive = ("solver_steps", "num_paths", "shard_size", "teacher_batch_size", "default_steps", "train_batch_size")
    positive += ("max_train_steps", "checkpointing_steps", "logging_steps", "validation_size")
    for name in positive:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.num_paths % args.shard_size or args.num_paths // args.shard_size < 2:
        raise ValueError(
            f"--num_paths ({args.num_paths}) must be at least two shards of --shard_size ({args.shard_size}) and a "
            "multiple of it: the last shard is held out"
        )
    if args.default_steps > args.solver_steps:
        raise ValueError(f"--default_steps {args.default_steps} exceeds --solver_steps {args.solver_steps}")
    if not 0 <= args.guidance < 100 or not 0 < args.learning_rate < 1 or not 0 <= args.ema_decay < 1:
        raise ValueError("--guidance must be in [0, 100), --learning_rate in (0, 1), --ema_decay in [0, 1)")
    args.teacher = str(resolve_pretrained(args.teacher))
    args.student_init = str(resolve_pretrained(args.student_init))
    if args.paths_dir is None:
        args.paths_dir = args.output_dir.parent / f"{args.output_dir.name}-teacher-paths"


def main(args: argparse.Namespace):
    return train_student(args)


if __name__ == "__main__":
    from pipelines.command_line import run_command  # user errors: one line on stderr, exit status 2

    run_command(main, parse_args)
