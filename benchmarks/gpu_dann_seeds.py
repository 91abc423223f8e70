"""Every mode x seed of one DANN scenario side by side on one GPU, with the steps sized to a wall-time budget.

    python -m benchmarks.gpu_dann_seeds --source mnist --target mnistm \
        --source_dir gpu-data-mnist/mnist5k --target_dir gpu-data-mnist/mnistm --output_dir /tmp/seeds \
        --group wide=source_only,dann,mean_teacher,vada:--conv_channels,64,128 --group narrow=vada: \
        --seeds 0 1 2 --budget_s 300 --deadline_s 470 -- <train_dann flags shared by every run>

Each (group, mode, seed) is one `training/train_dann.py` process with one CPU thread: the data and the
augmentation live on the GPU, so a small network is bound by kernel launches, and a 16-core machine keeps
about 15 of them busy at once. How many steps fit is not known before the GPU is seen, so:
  1. calibration: every job runs a few short epochs side by side, which measures each job's step time under
     the load of all the others;
  2. the slowest job's step time sets the epochs so that every run ends within --budget_s, and every run gets
     the same epochs (equal budget in every row of a table);
  3. the runs; any still running at --deadline_s (from the start) is stopped and reported as unfinished;
  4. each group's table and t-SNE by `training.report.dann_experiments --no_train` over the finished runs.
A group is NAME=MODES:FLAGS, with commas for spaces (FLAGS are added to that group's runs only).

Writes into --output_dir: runs/<group>/<source>-<target>-<mode>-seed<k>/ (train_dann's folders),
figures/<group>/ (tables, t-SNE), logs/*.log, summary.json and summary.md. --dry_run: tiny sizes on the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from adapters.folders import check_output_dir, record_folder, write_text_atomically
from benchmarks.gpu_suite.summary import environment
from training.report.dann_experiments import ROWS

ROOT = Path(__file__).resolve().parents[1]  # the training processes run from the repository root


@dataclass
class Group:
    name: str
    modes: list[str]
    flags: list[str]


@dataclass
class Job:
    group: Group
    mode: str
    seed: int
    run_dir: Path
    log: Path
    process: subprocess.Popen | None = None
    started: float = 0.0
    ended: float | None = None


def parse_group(text: str) -> Group:
    if "=" not in text or ":" not in text:
        raise argparse.ArgumentTypeError(f"--group {text!r}: expected NAME=MODE,MODE:FLAG,VALUE (FLAGS may be empty)")
    name, rest = text.split("=", 1)
    modes_text, flags_text = rest.split(":", 1)
    modes = [m for m in modes_text.split(",") if m]
    unknown = [m for m in modes if m not in ROWS or m == "target_only"]
    if not name.isidentifier() or not modes or unknown:
        raise argparse.ArgumentTypeError(
            f"--group {text!r}: needs a plain name and modes among {[m for m in ROWS if m != 'target_only']}"
            + (f"; not {unknown}" if unknown else "")
            + (
                " (target_only's epochs are target epochs: the steps would differ from the other rows)"
                if "target_only" in unknown
                else ""
            )
        )
    return Group(name, modes, [f for f in flags_text.split(",") if f])


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    train_argv = argv[argv.index("--") + 1 :] if "--" in argv else []
    own_argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="mnist")
    parser.add_argument("--target", default="mnistm")
    parser.add_argument("--source_dir", required=True)
    parser.add_argument("--target_dir", required=True)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--group", type=parse_group, action="append", required=True, dest="groups")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget_s", type=float, default=300.0, help="wall time the training loops may take")
    parser.add_argument(
        "--deadline_s",
        type=float,
        default=470.0,
        help="from the start: runs still going then are stopped; tables and packing follow",
    )
    parser.add_argument(
        "--calibration_steps", type=int, default=62, help="steps per calibration epoch (at most an epoch's)"
    )
    parser.add_argument("--max_epochs", type=int, default=480)
    parser.add_argument("--evals", type=int, default=8, help="target validations per run (epochs round to it)")
    parser.add_argument("--steps_per_epoch", type=int, default=None, help="cap (dry runs)")
    parser.add_argument("--tsne_per_domain", type=int, default=600)
    parser.add_argument("--dry_run", action="store_true", help="tiny sizes on the CPU: every phase runs")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output_dir")
    args = parser.parse_args(own_argv)
    if args.dry_run:
        args.calibration_steps, args.max_epochs, args.evals = 2, 2, 2
        args.steps_per_epoch, args.tsne_per_domain = 2, 10
    if not 0 < args.budget_s < args.deadline_s:
        parser.error(f"need 0 < --budget_s ({args.budget_s}) < --deadline_s ({args.deadline_s})")
    if args.max_epochs < args.evals:
        parser.error(f"need --evals ({args.evals}) <= --max_epochs ({args.max_epochs})")
    names = [g.name for g in args.groups]
    if len(set(names)) != len(names):
        parser.error(f"--group names repeat: {names}")
    args.train_argv = train_argv
    # the training processes run in the repository root: relative paths must mean what they meant here
    args.source_dir, args.target_dir = str(Path(args.source_dir).resolve()), str(Path(args.target_dir).resolve())
    args.output_dir = args.output_dir.resolve()
    check_output_dir(args.output_dir, args.overwrite, inputs=(args.source_dir, args.target_dir))  # before GPU time
    return args


def scenario_flags(args) -> list[str]:
    """The flags that name the scenario's data, the same for training and for the tables."""
    return [
        *("--source", args.source, "--target", args.target),
        *("--source_dir", args.source_dir, "--target_dir", args.target_dir),
    ]


def train_command(
    args, group: Group, mode: str, seed: int, run_dir: Path, epochs: int, eval_every: int, steps_per_epoch: int | None
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "training.train_dann",
        *scenario_flags(args),
        "--mode",
        mode,
        "--seed",
        str(seed),
        "--output_dir",
        str(run_dir),
        *args.train_argv,
        *group.flags,
        # the last occurrence wins in argparse: these override whatever the shared flags say
        "--epochs",
        str(epochs),
        "--eval_every",
        str(eval_every),
        "--checkpoint_every",
        str(epochs),
        "--num_threads",
        "1",
    ]
    if steps_per_epoch:
        command += ["--steps_per_epoch", str(steps_per_epoch)]
    return command


def make_jobs(args, phase: str) -> list[Job]:
    logs = args.output_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return [
        Job(
            g,
            mode,
            seed,
            args.output_dir / phase / g.name / f"{args.source}-{args.target}-{mode}-seed{seed}",
            logs / f"{phase}-{g.name}-{mode}-seed{seed}.log",
        )
        for g in args.groups
        for mode in g.modes
        for seed in args.seeds
    ]


def run_jobs(jobs: list[Job], commands: list[list[str]], deadline: float) -> None:
    """Start every job, wait for all of them or the deadline (monotonic clock), then stop what is left."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    try:
        for job, command in zip(jobs, commands):
            job.log.write_text(" ".join(command) + "\n\n")
            with job.log.open("a") as log:
                # its own process group, so that stopping it also stops whatever it started
                job.process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
                )
            job.started = time.monotonic()
        while any(job.ended is None for job in jobs) and time.monotonic() <= deadline:
            for job in jobs:
                if job.ended is None and job.process.poll() is not None:
                    job.ended = time.monotonic()
            time.sleep(0.5)
    finally:
        # past the deadline, or interrupted (Ctrl-C, SIGTERM, a failed start): no run outlives this function
        for job in jobs:
            if job.process is not None and job.ended is None:
                if job.process.poll() is None:
                    os.killpg(job.process.pid, signal.SIGKILL)
                    job.process.wait()
                job.ended = time.monotonic()


def job_record(job: Job) -> dict:
    metrics_file = job.run_dir / "metrics.json"
    record = {
        "group": job.group.name,
        "mode": job.mode,
        "seed": job.seed,
        "returncode": job.process.returncode,
        "process_wall_s": round(job.ended - job.started, 1),
        "finished": metrics_file.exists(),
    }
    if record["finished"]:
        metrics = json.loads(metrics_file.read_text())
        record.update(
            {
                key: metrics[key]
                for key in (
                    "target_val_accuracy",
                    "target_val_accuracy_before_adapt_bn",
                    "source_val_accuracy",
                    "steps",
                    "batch_size",
                    "wall_time_s",
                )
                if key in metrics
            }
        )
    else:
        record["log_tail"] = job.log.read_text()[-1500:]
    return record


# Calibration epochs: the step time is measured over epochs 2-5, after the first epoch's warm-up (cuDNN's
# search, allocations) and while the jobs that started late are stepping too; the only evaluation is at the end.
CALIBRATION_EPOCHS = 6


def step_time(job: Job, steps_per_epoch: int) -> float:
    history = json.loads((job.run_dir / "metrics.json").read_text())["history"]
    return (history[4]["elapsed_s"] - history[0]["elapsed_s"]) / (4 * steps_per_epoch)


# Seconds of a run outside its training loop (imports, decoding the data, AdaBN, the final evaluation), kept
# free before the deadline.
RUN_OVERHEAD_S = 45.0


def choose_epochs(args, seconds_per_step: float, steps_per_epoch: int, seconds_left: float | None = None) -> int:
    """As many epochs as fit --budget_s (or what the deadline leaves, if less) at the slowest job's step time,
    20% kept for what calibration does not show (evaluations, jobs starting together); a multiple of --evals,
    at least --evals."""
    budget = args.budget_s if seconds_left is None else min(args.budget_s, seconds_left - RUN_OVERHEAD_S)
    epochs = math.floor(budget / (1.2 * seconds_per_step * steps_per_epoch))
    epochs = min(args.max_epochs, max(args.evals, epochs))
    return epochs - epochs % args.evals


def calibrate(args, started: float, steps_per_epoch: int) -> dict:
    jobs = make_jobs(args, "calibration")
    steps = min(args.calibration_steps, steps_per_epoch)
    commands = [
        train_command(args, j.group, j.mode, j.seed, j.run_dir, CALIBRATION_EPOCHS, CALIBRATION_EPOCHS, steps)
        for j in jobs
    ]
    run_jobs(jobs, commands, started + min(args.deadline_s, 180.0))
    records = [job_record(j) for j in jobs]
    failed = [r for r in records if not r["finished"]]
    if failed:
        raise RuntimeError(f"{len(failed)} calibration run(s) failed; first: {failed[0]}")
    times = {f"{j.group.name}/{j.mode}/seed{j.seed}": step_time(j, steps) for j in jobs}
    return {
        "jobs": len(jobs),
        "seconds_per_step": times,
        "slowest_s": max(times.values()),
        "wall_s": round(time.monotonic() - started, 1),
    }


def labelled_steps_per_epoch(args) -> int:
    """Steps per epoch of the source (every mode here but target_only trains on it): train_dann's own rule."""
    from training.dann.args import parse_args as train_parse_args
    from training.dann.data import load_splits

    train_args = train_parse_args(["--source", args.source, "--target", args.target, *args.train_argv])
    source = load_splits(args.source, args.source_dir, holdout_per_class=train_args.holdout_per_class)
    steps = len(source.train_labels) // train_args.batch_size
    return min(steps, args.steps_per_epoch) if args.steps_per_epoch else steps


def group_tables(args, group: Group) -> dict:
    """The group's table and t-SNE over its finished runs (dann_experiments reads them; it trains nothing)."""
    command = [
        sys.executable,
        "-m",
        "training.report.dann_experiments",
        "--no_train",
        *scenario_flags(args),
        "--runs_dir",
        str(args.output_dir / "runs" / group.name),
        "--figures_dir",
        str(args.output_dir / "figures" / group.name),
        "--modes",
        *group.modes,
        "--seeds",
        *map(str, args.seeds),
        "--tsne_per_domain",
        str(args.tsne_per_domain),
        "--",
        *args.train_argv,
        *group.flags,
    ]
    log = args.output_dir / "logs" / f"tables-{group.name}.log"
    with log.open("w") as out:
        code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, timeout=300)
    table = args.output_dir / "figures" / group.name / f"{args.source}-{args.target}.md"
    return {"returncode": code, "table": table.read_text() if table.exists() else None}


def write_seeds_summary(args, summary: dict) -> None:
    """OUTPUT_DIR/summary.json and summary.md, each written whole: rewritten after every phase."""
    write_text_atomically(args.output_dir / "summary.json", json.dumps(summary, indent=2, default=str))
    lines = [
        f"# {args.source} -> {args.target}: modes x seeds side by side",
        "",
        f"device: {summary['environment']['device']}; torch {summary['environment']['packages']['torch']}; "
        f"commit {summary['environment']['commit']}",
        "",
        f"shared flags: `{' '.join(args.train_argv)}`",
        "",
    ]
    if "calibration" in summary:
        c = summary["calibration"]
        lines.append(
            f"calibration: {c['jobs']} jobs side by side, slowest step {1000 * c['slowest_s']:.1f} ms, {c['wall_s']} s"
        )
    if "epochs" in summary:
        lines.append(
            f"runs: {summary['epochs']} epochs x {summary['steps_per_epoch']} steps; "
            f"finished {summary.get('finished', '?')} of {summary.get('jobs', '?')} in "
            f"{summary.get('runs_wall_s', '?')} s"
        )
    for name, group in summary.get("groups", {}).items():
        lines += ["", f"## group {name}: `{' '.join(group['flags'])}`", "", group.get("table") or "(no table)"]
    if "error" in summary:
        lines += ["", "## error", "", "```", summary["error"], "```"]
    write_text_atomically(args.output_dir / "summary.md", "\n".join(lines) + "\n")
    record_folder(args.output_dir)  # what the phases wrote so far is ours: a later --overwrite may replace it


def _stop(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(args) -> dict:
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _stop)
    if args.output_dir.exists():
        shutil.rmtree(args.output_dir)  # parse_args refused it unless --overwrite and written by us
    args.output_dir.mkdir(parents=True)
    record_folder(args.output_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    summary = {
        "argv": sys.argv,
        "train_argv": args.train_argv,
        "environment": environment(device),
        "groups": {g.name: {"modes": g.modes, "flags": g.flags} for g in args.groups},
    }
    try:
        steps_per_epoch = labelled_steps_per_epoch(args)
        summary["calibration"] = calibrate(args, started, steps_per_epoch)
        write_seeds_summary(args, summary)
        seconds_left = args.deadline_s - (time.monotonic() - started)
        epochs = choose_epochs(args, summary["calibration"]["slowest_s"], steps_per_epoch, seconds_left)
        summary.update({"epochs": epochs, "steps_per_epoch": steps_per_epoch})
        jobs = make_jobs(args, "runs")
        commands = [
            train_command(args, j.group, j.mode, j.seed, j.run_dir, epochs, epochs // args.evals, args.steps_per_epoch)
            for j in jobs
        ]
        runs_started = time.monotonic()
        print(
            f"calibrated: {summary['calibration']['slowest_s'] * 1000:.1f} ms per step at most; "
            f"{len(jobs)} runs of {epochs} epochs x {steps_per_epoch} steps",
            flush=True,
        )
        run_jobs(jobs, commands, started + args.deadline_s)
        summary["runs"] = [job_record(j) for j in jobs]
        summary.update(
            {
                "jobs": len(jobs),
                "finished": sum(r["finished"] for r in summary["runs"]),
                "runs_wall_s": round(time.monotonic() - runs_started, 1),
            }
        )
        write_seeds_summary(args, summary)
        for group in args.groups:
            summary["groups"][group.name].update(group_tables(args, group))
    except Exception:  # noqa: BLE001 - the summary must say what failed, and what ran before it
        import traceback

        summary["error"] = traceback.format_exc()
        print(summary["error"], file=sys.stderr, flush=True)
    summary["total_wall_s"] = round(time.monotonic() - started, 1)
    write_seeds_summary(args, summary)
    print((args.output_dir / "summary.md").read_text(), flush=True)
    return summary


if __name__ == "__main__":
    main(parse_args())
