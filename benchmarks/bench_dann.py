"""Wall time of whole DANN training runs, per scenario and mode, on the current device (data loading included).

    python -m benchmarks.bench_dann --data_root ../shared/data                        # the report's setting
    python -m benchmarks.bench_dann --data_root ../shared/data --epochs 1 --steps_per_epoch 10   # CPU sample

The report's setting is its networks, batch 1024, 100 epochs (about 44,800 source images per epoch).
Each run is `training/train_dann.py`'s `main` in this process, timed from before the datasets are
loaded until the Hub folder is written; the per-epoch time and throughput are derived from that.
Results are printed as a markdown table and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from training import train_dann

# scenario -> (source, target, data folder names under --data_root)
SCENARIOS = {
    "mnistm-usps": ("mnistm", "usps", "mnistm", "usps"),
    "mnist-mnistm": ("mnist", "mnistm", "mnist5k", "mnistm"),
    "mnistm-svhn": ("mnistm", "svhn", "mnistm", "svhn"),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_root", required=True, help="folder holding mnistm/, usps/, mnist5k/ (and svhn/)")
    parser.add_argument("--scenarios", nargs="+", default=["mnistm-usps", "mnist-mnistm"], choices=sorted(SCENARIOS))
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["source_only", "dann", "target_only"],  # the report's
        choices=train_dann.MODES,
    )
    parser.add_argument("--architecture", default="report")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--steps_per_epoch", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--num_threads", type=int, default=None)
    parser.add_argument("--output_json", default="runs/bench_dann.json")
    return parser.parse_args(argv)


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(args):
    root = Path(args.data_root)
    results = []
    for scenario in args.scenarios:
        source, target, source_dir, target_dir = SCENARIOS[scenario]
        if not (root / target_dir).exists():
            print(f"skipping {scenario}: {root / target_dir} not found")
            continue
        for mode in args.modes:
            with tempfile.TemporaryDirectory() as output_dir:
                argv = [
                    "--source",
                    source,
                    "--target",
                    target,
                    "--mode",
                    mode,
                    "--source_dir",
                    str(root / source_dir),
                    "--target_dir",
                    str(root / target_dir),
                    "--architecture",
                    args.architecture,
                    "--epochs",
                    str(args.epochs),
                    "--batch_size",
                    str(args.batch_size),
                    "--mixed_precision",
                    args.mixed_precision,
                    "--checkpoint_every",
                    str(args.epochs),
                    "--output_dir",
                    output_dir,
                ]
                if args.steps_per_epoch:
                    argv += ["--steps_per_epoch", str(args.steps_per_epoch)]
                if args.num_threads:
                    argv += ["--num_threads", str(args.num_threads)]
                started = time.perf_counter()
                final = train_dann.main(train_dann.parse_args(argv))
                wall = time.perf_counter() - started
            results.append(
                {
                    "scenario": scenario,
                    "mode": mode,
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "images_seen": final["images_seen"],
                    "wall_time_s": wall,
                    "seconds_per_epoch": wall / args.epochs,
                    "labelled_images_per_s": final["images_seen"] / wall,
                    "target_val_accuracy": final["target_val_accuracy"],
                }
            )
    report = {"device": device_name(), "architecture": args.architecture, "results": results}
    Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output_json).write_text(json.dumps(report, indent=2))
    print(f"device: {report['device']}, architecture {args.architecture}\n")
    print("| scenario | mode | epochs x steps | wall time (s) | s / epoch | labelled img/s | target acc |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        steps = r["images_seen"] // (r["batch_size"] * r["epochs"])
        print(
            f"| {r['scenario']} | {r['mode']} | {r['epochs']} x {steps} | {r['wall_time_s']:.1f} | "
            f"{r['seconds_per_epoch']:.2f} | {r['labelled_images_per_s']:.0f} | {r['target_val_accuracy']:.4f} |"
        )
    return report


if __name__ == "__main__":
    main(parse_args())
