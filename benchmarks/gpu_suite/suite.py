"""Measure the whole project on one GPU in one go (about 8 minutes on an H100), or all of it tiny on a CPU.

    python -m benchmarks.gpu_suite --data gpu-data --output_dir OUT            # a GPU machine, no network
    python -m benchmarks.gpu_suite --data gpu-data --output_dir OUT --dry_run  # every stage, tiny, CPU, < 2 min

Stages, each with its own time budget (seconds, --budget_scale multiplies them all):
  timing   (c) old vs new training steps and samplers side by side, each speed measure alone, then the
               torch.compile / CUDA-graph variants in a child process that is stopped at its budget
  train    (a) the conditional DDPM from scratch with the fast path, against a wall-time budget that counts
               data loading (the schedule is sized from the timing stage's measured step time)
  sample   (b) 1000 digits with DDPM (all 400 steps), DDIM 50 and the fast sampler, each timed and scored by
               the project's classifier; the course-output command timed against the pipeline
  dann     (d) source-only / DANN / target-only, MNIST-M -> USPS, with the report's network and budget
               (batch 1024, 100 epochs) and with the shipped improved recipe
  faces    (e) a face model trained longer, larger and with flips; how many of the 40 eta-grid images are
               faces, for it and for the shipped model; the DDIM figures remade with it
  summary  (f) OUT/summary.md and OUT/summary.json: every figure, the device, versions, exact settings;
               the trained weights stay in OUT (cfg-model/, faces-model/, dann/*/)
A stage that fails is recorded with its error and the next one runs. --data must be laid out like
../shared/data (mnistm/, usps/, lfw_faces/); `python -m benchmarks.gpu_suite.make_data` writes a subset that
travels. Run it from the repository root: the timing stage starts `python -m benchmarks.bench_cfg` there.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from adapters.folders import check_output_dir, record_folder
from benchmarks.gpu_suite import cfg_stages, dann_and_face_stages
from benchmarks.gpu_suite.summary import environment, write_suite_summary
from pipelines.command_line import run_command

STAGES = ("timing", "train", "sample", "dann", "faces")


@dataclass(frozen=True)
class Sizes:
    """Every size the suite uses; `DRY` shrinks them so that the whole suite runs on a CPU in under 2 minutes."""

    unet: tuple = (16, 32, 64)  # the shipped cfg-mnistm-small, which reached 0.999 after 4,000 x 256 images
    groups: int = 8
    layers: int = 2
    timing_batch: int = 256  # the batch of the H100 measurement
    timing_steps: int = 30
    timing_warmup: int = 5
    num_images: int = 1000
    images_per_digit: int = 100
    ddpm_steps: int = 400
    timing_ddpm_steps: int = 50  # each DDPM step costs the same: 50 timed, x8 reported
    ddim_steps: int = 50
    fast_sampler: str = "dpm"
    fast_steps: int = 10
    eager_train: tuple = field(default_factory=lambda: ())
    eager_sample: tuple = field(default_factory=lambda: ())
    compiled: tuple = field(default_factory=lambda: ())
    train_batch: int = 512
    train_lr: float = 2e-3
    train_steps: int = 4000
    train_warmup: int = 200
    train_budget_s: float = 60.0
    train_extra: tuple = ()
    logging_steps: int = 100
    dann_report_batch: int = 1024
    dann_report_epochs: int = 100
    dann_report_extra: tuple = ()
    dann_improved_epochs: int = 10
    dann_improved_steps: int = 300
    face_unet: tuple = (32, 64, 128)
    face_layers: int = 2
    face_batch: int = 64
    face_steps: int = 3000  # the budget stops it earlier if the GPU is slower than about 45 steps/s
    face_budget_s: float = 65.0
    face_ddim_steps: int = 50
    face_extra: tuple = ()
    # Caps, not targets: together about 8 minutes. The stages' measured seconds are in the summary.
    budgets_s: dict = field(
        default_factory=lambda: {
            "timing_eager": 80,
            "timing_compiled": 50,
            "train": 70,
            "sample": 60,
            "dann": 120,
            "faces": 90,
        }
    )
    # Settings that override what the timing stage chose (the dry run sends bf16 and NHWC down every path).
    force_choice: dict = field(default_factory=dict)


def full_sizes() -> Sizes:
    return Sizes(
        eager_train=tuple(cfg_stages.EAGER_TRAIN),
        eager_sample=tuple(cfg_stages.EAGER_SAMPLE),
        compiled=tuple(cfg_stages.COMPILED),
    )


# The dry run's sizes: every stage in tiny sizes on the CPU, in under 2 minutes. The compiled variants need a C++
# toolchain and minutes on a CPU, so they are left out (the eager variants take the same child-process path); bf16
# and channels_last are forced so that the paths a GPU is likely to take run here first.
DRY_RUN_SIZES = {
    "unet": (8, 16),
    "groups": 4,
    "layers": 1,
    "timing_batch": 8,
    "timing_steps": 2,
    "timing_warmup": 1,
    "num_images": 10,
    "images_per_digit": 1,
    "ddpm_steps": 3,
    "timing_ddpm_steps": 2,
    "ddim_steps": 2,
    "fast_steps": 2,
    "eager_train": ("old", "new"),
    "eager_sample": ("new",),
    "compiled": (),
    "train_batch": 8,
    "train_steps": 3,
    "train_warmup": 1,
    "train_extra": ("--max_train_images", "64"),
    "logging_steps": 1,
    "dann_report_batch": 64,
    "dann_report_epochs": 1,
    "dann_report_extra": ("--steps_per_epoch", "2"),
    "dann_improved_epochs": 1,
    "dann_improved_steps": 2,
    "face_unet": (8, 16),
    "face_layers": 1,
    "face_batch": 8,
    "face_steps": 2,
    "face_ddim_steps": 2,
    "budgets_s": {"timing_eager": 60, "timing_compiled": 60, "train": 60, "sample": 60, "dann": 60, "faces": 60},
    "force_choice": {"train_bf16": True, "train_channels_last": True, "sample_variant": "new+bf16+channels_last"},
}


def dry_sizes() -> Sizes:
    return replace(full_sizes(), **DRY_RUN_SIZES)


@dataclass
class Context:
    data: Path
    out: Path
    device: str
    dry_run: bool
    seed: int
    sizes: Sizes
    budget_scale: float

    def budget(self, stage: str) -> float:
        return self.sizes.budgets_s[stage] * self.budget_scale


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_suite",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="a folder laid out like ../shared/data")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--dry_run", action="store_true", help="every stage in tiny sizes on the CPU")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--budget_scale", type=float, default=1.0, help="multiplies every stage's time budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cfg_model",
        type=Path,
        default=None,
        help="pipeline folder for the sample stage when the train stage is not run "
        "(e.g. OUT/cfg-model of an earlier run)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output_dir")
    args = parser.parse_args(argv)
    missing = [name for name in ("mnistm", "usps", "lfw_faces") if not (args.data / name).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"--data {args.data} lacks {', '.join(missing)}: lay it out like ../shared/data "
            "(python -m benchmarks.gpu_suite.make_data writes such a folder)"
        )
    if not args.budget_scale > 0:
        raise ValueError(f"--budget_scale must be > 0, got {args.budget_scale}")
    check_output_dir(args.output_dir, args.overwrite, inputs=(args.data,))
    return args


def reset_accelerate_state() -> None:
    """Forget the process-wide accelerate state that the stage's training command set up.

    Every training command builds its own Accelerator, and accelerate keeps the first one's settings for the
    whole process: a later Accelerator with another mixed precision raises, one with another dynamo backend
    silently keeps the first. The suite runs several commands in one process (a child each would cost seconds of
    imports), so it clears that state between them, as a fresh process would start.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def run_guarded_stage(record: dict, name: str, work) -> object:
    """Run one stage; its result or its error goes into `record`, and the suite goes on either way."""
    started = time.perf_counter()
    print(f"[gpu_suite] stage {name} ...", flush=True)
    try:
        reset_accelerate_state()  # also whatever an earlier caller in this process left
        result = work()
        record[name] = {"status": "ok", **(result or {})}
    except Exception as error:  # noqa: BLE001 - recorded in the summary; one stage must not sink the rest
        result = None
        record[name] = {
            "status": "failed",
            "error": f"{type(error).__name__}: {error}",
            "traceback": traceback.format_exc()[-4000:],
        }
    finally:
        reset_accelerate_state()
    record[name]["stage_seconds"] = time.perf_counter() - started
    print(f"[gpu_suite] stage {name}: {record[name]['status']} in {record[name]['stage_seconds']:.1f} s", flush=True)
    return result


def main(args) -> dict:
    threads = torch.get_num_threads()
    try:
        return run_suite(args)
    finally:
        torch.set_num_threads(threads)  # the dry run lowers it; a caller (the tests) gets its own back


def run_suite(args) -> dict:
    started = time.perf_counter()
    if args.output_dir.exists():
        shutil.rmtree(args.output_dir)  # check_output_dir refused it unless --overwrite and written by us
    args.output_dir.mkdir(parents=True)
    record_folder(args.output_dir)
    device = "cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"
    if args.dry_run:
        torch.set_num_threads(1)  # tiny models: more threads only wait on each other, worse on a busy machine
    ctx = Context(
        args.data,
        args.output_dir,
        device,
        args.dry_run,
        args.seed,
        dry_sizes() if args.dry_run else full_sizes(),
        args.budget_scale,
    )
    stages: dict = {}

    def summarise() -> dict:
        # rewritten after every stage, so that a run stopped from outside still leaves what it measured
        summary = {
            "argv": sys.argv[1:],
            "dry_run": args.dry_run,
            "environment": env,
            "sizes": asdict(ctx.sizes),
            "budget_scale": args.budget_scale,
            "stages": stages,
            "total_seconds": time.perf_counter() - started,
        }
        write_suite_summary(summary, args.output_dir)
        record_folder(args.output_dir)  # what the stages wrote so far is ours: a later --overwrite may replace it
        return summary

    env = environment(device)
    timing = train = None
    if "timing" in args.stages:
        timing = run_guarded_stage(stages, "timing", lambda: cfg_stages.timing_stage(ctx))
        summarise()
    if "train" in args.stages:
        train = run_guarded_stage(stages, "train", lambda: cfg_stages.train_stage(ctx, timing))
        summarise()
    if "sample" in args.stages:
        model = Path(train["model"]) if train else args.cfg_model
        if model is None:
            stages["sample"] = {"status": "skipped", "error": "no model: the train stage did not run or failed"}
        else:
            choice = {**(timing or {}).get("choice", {}), **ctx.sizes.force_choice}
            run_guarded_stage(stages, "sample", lambda: cfg_stages.sample_and_score(ctx, model, choice))
        summarise()
    if "dann" in args.stages:
        run_guarded_stage(stages, "dann", lambda: dann_and_face_stages.dann_stage(ctx))
        summarise()
    if "faces" in args.stages:
        run_guarded_stage(stages, "faces", lambda: dann_and_face_stages.faces_stage(ctx))
    summary = summarise()
    print(f"[gpu_suite] wrote {args.output_dir / 'summary.md'} after {summary['total_seconds']:.0f} s", flush=True)
    return summary


def cli(argv=None) -> None:
    run_command(main, parse_args, argv)
