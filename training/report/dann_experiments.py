"""The report's DANN experiment for one scenario, over seeds: the modes, the accuracy tables and t-SNE figures.

    python -m training.report.dann_experiments --source mnistm --target usps \
        --source_dir ../shared/data/mnistm --target_dir ../shared/data/usps --seeds 0 1 2 \
        --modes source_only dann mean_teacher target_only \
        --runs_dir runs/dann --figures_dir docs/figures/dann -- --epochs 3 --augment

Arguments after `--` go to training/train_dann.py for every mode and seed, so every row has the same
preprocessing, augmentation, architecture and number of steps. A run whose folder
(`<runs_dir>/<source>-<target>-<mode>-seed<k>`) already holds `metrics.json` is read, not retrained, so
finished runs (e.g. long ones trained in the background) can be collected; `--retrain` forces training and
`--no_train` reports only what has finished (the missing runs are listed as such).

Writes into --figures_dir:
  <source>-<target>.json              per mode: every seed's numbers, mean and std, steps, batch, wall time
  <source>-<target>.md                that scenario's table (mean ± std over the seeds that finished)
  accuracy.md / accuracy.json         the report-style table of every scenario found there
  <source>-<target>-tsne-digit.png    t-SNE of each mode's features (first seed), both domains, by digit
  <source>-<target>-tsne-domain.png   the same points coloured by domain
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

import matplotlib
import torch
from matplotlib.figure import Figure

from adapters import DIGIT_DATASETS, to_model_range
from adapters.folders import write_file_atomically
from pipelines.command_line import run_command
from pipelines.dann.modeling_dann import DANNModel
from training import train_dann
from training.dann.data import load_splits, random_affine

# The report's rows (training/report/markdown.py prints these three); ROWS adds the methods beyond it.
MODE_ROWS = {"source_only": "trained on source", "dann": "DANN", "target_only": "trained on target"}
ROWS = {
    "source_only": "trained on source",
    "dann": "DANN",
    "mean_teacher": "mean teacher (pseudo-labels)",
    "vada": "VADA (DANN + entropy + VAT)",
    "target_only": "trained on target",
}
DISPLAY = {"mnistm": "MNIST-M", "usps": "USPS", "svhn": "SVHN", "mnist": "MNIST"}


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    train_argv = argv[argv.index("--") + 1 :] if "--" in argv else []
    own_argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description="DANN experiments: the modes over seeds, accuracy table, t-SNE.")
    parser.add_argument("--source", default="mnistm", choices=sorted(DIGIT_DATASETS))
    parser.add_argument("--target", default="usps", choices=sorted(DIGIT_DATASETS))
    parser.add_argument("--source_dir", default=None, help="default: the embedded subset")
    parser.add_argument("--target_dir", default=None, help="default: the embedded subset")
    parser.add_argument("--modes", nargs="+", default=list(MODE_ROWS), choices=list(ROWS))
    parser.add_argument("--runs_dir", default="runs/dann")
    parser.add_argument("--figures_dir", default="runs/dann/figures")
    parser.add_argument("--retrain", action="store_true", help="train even when a finished run exists")
    parser.add_argument("--no_train", action="store_true", help="only collect finished runs; train nothing")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="training seeds, one run each per mode (default: --seed)"
    )
    parser.add_argument("--tsne_per_domain", type=int, default=600, help="validation images per domain in the t-SNE")
    parser.add_argument(
        "--source_zoom",
        type=float,
        default=1.0,
        help="zoom the source validation images in the t-SNE (the centre of a training --aug_scale)",
    )
    parser.add_argument("--seed", type=int, default=0, help="t-SNE sampling seed, and the training seed by default")
    args = parser.parse_args(own_argv)
    if args.retrain and args.no_train:
        parser.error("--retrain and --no_train contradict each other")
    if args.tsne_per_domain < 10:
        parser.error(f"--tsne_per_domain must be at least 10, got {args.tsne_per_domain}")
    args.seeds = args.seeds if args.seeds is not None else [args.seed]
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    args.train_argv = train_argv
    return args


def run_or_read(args, mode: str, seed: int) -> dict | None:
    """The metrics of one (mode, seed) run, training it first unless it has finished (None: not run)."""
    run_dir = Path(args.runs_dir) / f"{args.source}-{args.target}-{mode}-seed{seed}"
    metrics_file = run_dir / "metrics.json"
    if args.retrain or not metrics_file.exists():
        if args.no_train:
            return None
        if args.retrain:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        common = [
            "--source",
            args.source,
            "--target",
            args.target,
            "--mode",
            mode,
            "--output_dir",
            str(run_dir),
            "--seed",
            str(seed),
        ]
        for flag, value in (("--source_dir", args.source_dir), ("--target_dir", args.target_dir)):
            if value:
                common += [flag, value]
        resume = ["--resume_from_checkpoint", "latest"] if not args.retrain else []
        train_dann.main(train_dann.parse_args(common + resume + args.train_argv))
    metrics = json.loads(metrics_file.read_text())
    metrics["run_dir"] = str(run_dir)
    return metrics


REPORTED = (
    "target_val_accuracy",
    "target_val_accuracy_before_adapt_bn",
    "target_val_accuracy_nearest_resize",
    "target_val_ece",
    "target_val_ece_calibrated",
    "source_val_accuracy",
    "wall_time_s",
)


def mode_summary(runs: dict[int, dict]) -> dict:
    """Every seed's numbers, and mean / sample std of each over the seeds that finished."""
    first = next(iter(runs.values()))
    summary = {
        "seeds": sorted(runs),
        "architecture": first["architecture"],
        "target_val_note": first["target_val_note"],
        "steps": first.get("steps"),
        "batch_size": first.get("batch_size"),
        "run_dirs": [runs[k]["run_dir"] for k in sorted(runs)],
        "per_seed": {str(k): {key: runs[k][key] for key in REPORTED if key in runs[k]} for k in sorted(runs)},
    }
    for key in REPORTED:
        values = [runs[k][key] for k in sorted(runs) if key in runs[k]]
        if values:
            summary[f"{key}_n"] = len(values)  # older runs may lack a measurement
            summary[key] = statistics.fmean(values)
            summary[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return summary


@torch.no_grad()
def domain_features(
    model: DANNModel, images_u8: torch.Tensor, count: int, seed: int, own_statistics: bool, zoom: float = 1.0
):
    """Features of `count` randomly chosen images (fixed seed), and which rows were chosen.

    own_statistics: normalise with this domain's batch statistics instead of the stored ones. A model whose
    BatchNorm was re-estimated on the target (AdaBN) would otherwise push source images through target
    statistics, which no source image ever meets at test time.
    """
    rows = torch.randperm(len(images_u8), generator=torch.Generator().manual_seed(seed))[:count]
    model.eval()
    if own_statistics:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.train()
    pixel_values = to_model_range(images_u8[rows])
    if zoom != 1.0:
        pixel_values = random_affine(pixel_values, torch.Generator(), 0.0, (zoom, zoom), 0.0)
    features = model(pixel_values).features
    model.eval()
    return features, rows


def embed(args, run_dir: str, source, target):
    """2-d t-SNE of one model's features on the same validation images of both domains."""
    from sklearn.manifold import TSNE

    model = DANNModel.from_pretrained(run_dir)
    # a model whose BatchNorm was re-estimated on the target normalises each domain by its own statistics
    own_statistics = "target_val_accuracy_before_adapt_bn" in json.loads(Path(run_dir, "metrics.json").read_text())
    src_feat, src_rows = domain_features(
        model, source.val_images, args.tsne_per_domain, args.seed, own_statistics, args.source_zoom
    )
    tgt_feat, tgt_rows = domain_features(model, target.val_images, args.tsne_per_domain, args.seed, own_statistics)
    features = torch.cat([src_feat, tgt_feat]).numpy()
    digits = torch.cat([source.val_labels[src_rows], target.val_labels[tgt_rows]]).numpy()
    domains = [0] * len(src_rows) + [1] * len(tgt_rows)
    perplexity = min(30.0, (len(features) - 1) / 3)
    embedded = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=args.seed).fit_transform(features)
    return embedded, digits, domains


def tsne_figures(args, first_runs: dict[str, dict], figures_dir: Path) -> list[Path]:
    """One figure per colouring (digit, domain), one panel per mode, side by side."""

    source = load_splits(args.source, args.source_dir)
    target = load_splits(args.target, args.target_dir)
    panels = {mode: embed(args, run["run_dir"], source, target) for mode, run in first_runs.items()}
    names = (DISPLAY[args.source], DISPLAY[args.target])
    zoomed = f", zoomed x{args.source_zoom:g}" if args.source_zoom != 1.0 else ""
    paths = []
    for kind in ("digit", "domain"):
        legend = (
            [str(d) for d in range(10)] if kind == "digit" else [f"{names[0]} (source{zoomed})", f"{names[1]} (target)"]
        )
        fig = Figure(figsize=(5 * len(panels), 5.4))
        axes = fig.subplots(1, len(panels), squeeze=False)
        cmap = matplotlib.colormaps["tab10"]
        for ax, (mode, (embedded, digits, domains)) in zip(axes[0], panels.items()):
            colours = digits if kind == "digit" else domains
            for value, label in enumerate(legend):
                mask = [c == value for c in colours]
                ax.scatter(
                    embedded[mask, 0],
                    embedded[mask, 1],
                    s=5,
                    alpha=0.7,
                    label=label,
                    color=cmap(value if kind == "digit" else 3 * value),
                )
            seed = first_runs[mode]["run_dir"].rsplit("-seed", 1)[-1]
            ax.set_title(f"{ROWS[mode]} (seed {seed})", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][-1].legend(markerscale=3, fontsize=8, loc="best")
        fig.suptitle(f"t-SNE of the features, {names[0]} -> {names[1]} validation images, coloured by {kind}")
        fig.tight_layout()
        path = figures_dir / f"{args.source}-{args.target}-tsne-{kind}.png"
        write_file_atomically(path, lambda temporary, fig=fig: fig.savefig(temporary, dpi=90))
        paths.append(path)
    return paths


def _pm(mode: dict, key: str, digits: int = 4) -> str:
    """mean ± std; no ± for a single value ("± 0" would claim a spread), and a note when runs lack the value."""
    if key not in mode:
        return "—"
    count, runs = mode.get(f"{key}_n", len(mode["seeds"])), len(mode["seeds"])
    cell = f"{mode[key]:.{digits}f}" + (f" ± {mode[key + '_std']:.{digits}f}" if count > 1 else "")
    return cell + (f" ({count} of {runs} runs)" if count < runs else "")


def scenario_table(summary: dict) -> str:
    """One scenario, one row per mode: mean ± std over the seeds that finished, and the budget."""
    lines = [
        "| | target val accuracy | before AdaBN | nearest-resized target | target ECE (calibrated) "
        "| seeds | steps x batch | wall time per run (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, row in ROWS.items():
        if mode not in summary["modes"]:
            continue
        m = summary["modes"][mode]
        lines.append(
            f"| {row} | {_pm(m, 'target_val_accuracy')} | {_pm(m, 'target_val_accuracy_before_adapt_bn')} "
            f"| {_pm(m, 'target_val_accuracy_nearest_resize')} | {_pm(m, 'target_val_ece_calibrated', 3)} "
            f"| {', '.join(map(str, m['seeds']))} | {m['steps']} x {m['batch_size']} "
            f"| {_pm(m, 'wall_time_s', 0)} |"
        )
    missing = summary.get("not_finished", [])
    if missing:
        lines.append("")
        lines.append("Not finished: " + ", ".join(missing) + ".")
    return "\n".join(lines) + "\n"


def accuracy_cell(run: dict) -> str:
    cell = f"{run['target_val_accuracy']:.4f}"
    if run.get("target_val_accuracy_std"):
        cell += f" ± {run['target_val_accuracy_std']:.4f}"
    if "target_val_accuracy_before_adapt_bn" in run:
        cell += f" ({run['target_val_accuracy_before_adapt_bn']:.4f} before AdaBN)"
    return cell


def write_tables(figures_dir: Path) -> str:
    """accuracy.md / accuracy.json from every <source>-<target>.json in figures_dir."""
    scenarios = {}
    for file in sorted(figures_dir.glob("*-*.json")):
        data = json.loads(file.read_text()) if file.name != "accuracy.json" else {}
        if "modes" in data:  # a scenario summary, not e.g. a run's metrics copied beside it
            scenarios[file.stem] = data
    header = "| | " + " | ".join(f"{DISPLAY[s['source']]} → {DISPLAY[s['target']]}" for s in scenarios.values()) + " |"
    lines = [header, "|---" * (len(scenarios) + 1) + "|"]
    for mode, row_name in ROWS.items():
        if not any(mode in s["modes"] for s in scenarios.values()):
            continue
        cells = [accuracy_cell(s["modes"][mode]) if mode in s["modes"] else "-" for s in scenarios.values()]
        lines.append(f"| {row_name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    (figures_dir / "accuracy.md").write_text(table)
    (figures_dir / "accuracy.json").write_text(json.dumps(scenarios, indent=2))
    return table


def main(args):
    figures_dir = Path(args.figures_dir)
    summary = {
        "source": args.source,
        "target": args.target,
        "train_args": args.train_argv,
        "modes": {},
        "not_finished": [],
    }
    first_runs = {}
    for mode in args.modes:
        runs = {}
        for seed in args.seeds:
            run = run_or_read(args, mode, seed)
            if run is None:
                summary["not_finished"].append(f"{mode} seed {seed}")
            else:
                runs[seed] = run
        if runs:
            summary["modes"][mode] = mode_summary(runs)
            first_runs[mode] = runs[min(runs)]
    if not summary["modes"]:
        raise FileNotFoundError(f"no finished run under {args.runs_dir} for {args.source} -> {args.target}")
    figures_dir.mkdir(parents=True, exist_ok=True)  # only once there is something to write into it
    stem = f"{args.source}-{args.target}"
    (figures_dir / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    (figures_dir / f"{stem}.md").write_text(scenario_table(summary))
    shown = {mode: run for mode, run in first_runs.items() if mode != "target_only"}
    if shown:
        tsne_figures(args, shown, figures_dir)
    return write_tables(figures_dir)


def cli(argv=None):
    print(run_command(main, parse_args, argv))


if __name__ == "__main__":
    cli()
