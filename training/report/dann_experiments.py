"""The report's DANN experiment for one scenario: the three modes, the accuracy table and two t-SNE figures.

    python -m training.report.dann_experiments --source mnistm --target usps \
        --source_dir ../shared/data/mnistm --target_dir ../shared/data/usps \
        --runs_dir runs/dann --figures_dir docs/figures/dann -- --epochs 3 --augment

Arguments after `--` go to training/train_dann.py for every mode. A mode whose run folder
(`<runs_dir>/<source>-<target>-<mode>`) already holds `metrics.json` is read, not retrained, so
finished runs (e.g. a long one trained separately) can be collected; `--retrain` forces training.

Writes into --figures_dir:
  <source>-<target>.json              accuracies of the three modes and their settings
  accuracy.md / accuracy.json         the table of every scenario found there
  <source>-<target>-tsne-digit.png    t-SNE of the DANN features, validation images of both domains, by digit
  <source>-<target>-tsne-domain.png   the same points coloured by domain
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch

from adapters import DIGIT_DATASETS, to_model_range
from pipelines.command_line import run_command
from pipelines.dann.modeling_dann import DANNModel
from training import train_dann
from training.dann_data import load_splits, random_affine

MODE_ROWS = {"source_only": "trained on source", "dann": "DANN", "target_only": "trained on target"}
DISPLAY = {"mnistm": "MNIST-M", "usps": "USPS", "svhn": "SVHN", "mnist": "MNIST"}


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    train_argv = argv[argv.index("--") + 1:] if "--" in argv else []
    own_argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description="DANN experiments: three modes, accuracy table, t-SNE.")
    parser.add_argument("--source", default="mnistm", choices=sorted(DIGIT_DATASETS))
    parser.add_argument("--target", default="usps", choices=sorted(DIGIT_DATASETS))
    parser.add_argument("--source_dir", default=None, help="default: the embedded subset")
    parser.add_argument("--target_dir", default=None, help="default: the embedded subset")
    parser.add_argument("--modes", nargs="+", default=list(MODE_ROWS), choices=list(MODE_ROWS))
    parser.add_argument("--runs_dir", default="runs/dann")
    parser.add_argument("--figures_dir", default="runs/dann/figures")
    parser.add_argument("--retrain", action="store_true", help="train even when a finished run exists")
    parser.add_argument("--tsne_per_domain", type=int, default=600, help="validation images per domain in the t-SNE")
    parser.add_argument("--source_zoom", type=float, default=1.0,
                        help="zoom the source validation images in the t-SNE (the centre of a training --aug_scale)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(own_argv)
    args.train_argv = train_argv
    return args


def run_or_read(args, mode: str) -> dict:
    run_dir = Path(args.runs_dir) / f"{args.source}-{args.target}-{mode}"
    metrics_file = run_dir / "metrics.json"
    if args.retrain or not metrics_file.exists():
        if args.retrain:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        common = ["--source", args.source, "--target", args.target, "--mode", mode, "--output_dir", str(run_dir),
                  "--seed", str(args.seed)]
        for flag, value in (("--source_dir", args.source_dir), ("--target_dir", args.target_dir)):
            if value:
                common += [flag, value]
        resume = ["--resume_from_checkpoint", "latest"] if not args.retrain else []
        train_dann.main(train_dann.parse_args(common + resume + args.train_argv))
    metrics = json.loads(metrics_file.read_text())
    metrics["run_dir"] = str(run_dir)
    return metrics


@torch.no_grad()
def domain_features(model: DANNModel, images_u8: torch.Tensor, count: int, seed: int, own_statistics: bool,
                    zoom: float = 1.0):
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


def tsne_figures(args, dann_run: dict, figures_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    model = DANNModel.from_pretrained(dann_run["run_dir"])
    own_statistics = "target_val_accuracy_before_adapt_bn" in dann_run
    source = load_splits(args.source, args.source_dir)
    target = load_splits(args.target, args.target_dir)
    src_feat, src_rows = domain_features(model, source.val_images, args.tsne_per_domain, args.seed, own_statistics,
                                         args.source_zoom)
    tgt_feat, tgt_rows = domain_features(model, target.val_images, args.tsne_per_domain, args.seed, own_statistics)
    features = torch.cat([src_feat, tgt_feat]).numpy()
    digits = torch.cat([source.val_labels[src_rows], target.val_labels[tgt_rows]]).numpy()
    domains = [0] * len(src_rows) + [1] * len(tgt_rows)
    embedded = TSNE(n_components=2, init="pca", perplexity=30, random_state=args.seed).fit_transform(features)

    names = (DISPLAY[args.source], DISPLAY[args.target])
    zoomed = f", zoomed x{args.source_zoom:g}" if args.source_zoom != 1.0 else ""
    paths = []
    for kind, colours, legend in (
        ("digit", digits, [str(d) for d in range(10)]),
        ("domain", domains, [f"{names[0]} (source{zoomed})", f"{names[1]} (target)"]),
    ):
        fig, ax = plt.subplots(figsize=(6, 6))
        cmap = plt.get_cmap("tab10")
        for value, label in enumerate(legend):
            mask = [c == value for c in colours]
            ax.scatter(embedded[mask, 0], embedded[mask, 1], s=6, color=cmap(value if kind == "digit" else 3 * value),
                       label=label, alpha=0.7)
        ax.set_title(f"DANN features, {names[0]} -> {names[1]}, coloured by {kind}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(markerscale=3, fontsize=8, loc="best")
        fig.tight_layout()
        path = figures_dir / f"{args.source}-{args.target}-tsne-{kind}.png"
        temporary = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
        fig.savefig(temporary, dpi=100)
        plt.close(fig)
        os.replace(temporary, path)
        paths.append(path)
    return paths


def accuracy_cell(run: dict) -> str:
    cell = f"{run['target_val_accuracy']:.4f}"
    if "target_val_accuracy_before_adapt_bn" in run:
        cell += f" ({run['target_val_accuracy_before_adapt_bn']:.4f} before AdaBN)"
    return cell


def write_tables(figures_dir: Path) -> str:
    """accuracy.md / accuracy.json from every <source>-<target>.json in figures_dir."""
    scenarios = {}
    for file in sorted(figures_dir.glob("*-*.json")):
        if file.name != "accuracy.json":
            scenarios[file.stem] = json.loads(file.read_text())
    header = "| | " + " | ".join(
        f"{DISPLAY[s['source']]} → {DISPLAY[s['target']]}" for s in scenarios.values()) + " |"
    lines = [header, "|---" * (len(scenarios) + 1) + "|"]
    for mode, row_name in MODE_ROWS.items():
        cells = [accuracy_cell(s["modes"][mode]) if mode in s["modes"] else "-" for s in scenarios.values()]
        lines.append(f"| {row_name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    (figures_dir / "accuracy.md").write_text(table)
    (figures_dir / "accuracy.json").write_text(json.dumps(scenarios, indent=2))
    return table


def main(args):
    figures_dir = Path(args.figures_dir)
    results = {mode: run_or_read(args, mode) for mode in args.modes}
    figures_dir.mkdir(parents=True, exist_ok=True)  # only once there is something to write into it
    summary = {
        "source": args.source,
        "target": args.target,
        "modes": {
            mode: {k: r[k] for k in ("target_val_accuracy", "target_val_accuracy_before_adapt_bn", "target_val_note",
                                     "source_val_accuracy", "architecture", "images_seen", "wall_time_s", "run_dir")
                   if k in r}
            for mode, r in results.items()
        },
    }
    (figures_dir / f"{args.source}-{args.target}.json").write_text(json.dumps(summary, indent=2))
    if "dann" in results:
        tsne_figures(args, results["dann"], figures_dir)
    return write_tables(figures_dir)


def cli(argv=None):
    print(run_command(main, parse_args, argv))


if __name__ == "__main__":
    cli()
