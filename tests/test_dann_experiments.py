"""training.report.dann_experiments: tiny runs on the embedded data -> tables (Markdown, JSON), t-SNE PNGs."""

import json
import statistics

import pytest
from PIL import Image

from training.report import dann_experiments


def test_experiments_write_table_and_tsne(tmp_path):
    figures = tmp_path / "figures"
    argv = [
        "--runs_dir",
        str(tmp_path / "runs"),
        "--figures_dir",
        str(figures),
        "--tsne_per_domain",
        "60",
        "--",
        "--epochs",
        "1",
        "--steps_per_epoch",
        "3",
        "--batch_size",
        "32",
        "--num_threads",
        "1",
    ]
    table = dann_experiments.main(dann_experiments.parse_args(argv))
    assert "| trained on source |" in table and "| DANN |" in table and "| trained on target |" in table
    assert "MNIST-M → USPS" in table
    summary = json.loads((figures / "mnistm-usps.json").read_text())
    assert set(summary["modes"]) == {"source_only", "dann", "target_only"}
    assert json.loads((figures / "accuracy.json").read_text())["mnistm-usps"] == summary
    for kind in ("digit", "domain"):
        with Image.open(figures / f"mnistm-usps-tsne-{kind}.png") as image:
            assert image.size[0] > 100

    # A second call reads the finished runs instead of training again.
    dann_run = tmp_path / "runs" / "mnistm-usps-dann-seed0" / "model.safetensors"
    before = dann_run.stat().st_mtime_ns
    dann_experiments.main(dann_experiments.parse_args(argv))
    assert dann_run.stat().st_mtime_ns == before


def test_seeds_give_mean_and_std_and_unfinished_runs_are_named(tmp_path):
    figures = tmp_path / "figures"
    common = ["--runs_dir", str(tmp_path / "runs"), "--figures_dir", str(figures), "--tsne_per_domain", "40"]
    train = ["--", "--epochs", "1", "--steps_per_epoch", "2", "--batch_size", "32", "--num_threads", "1"]
    dann_experiments.main(
        dann_experiments.parse_args([*common, "--modes", "source_only", "mean_teacher", "--seeds", "0", "1", *train])
    )
    summary = json.loads((figures / "mnistm-usps.json").read_text())
    teacher = summary["modes"]["mean_teacher"]
    values = [teacher["per_seed"][s]["target_val_accuracy"] for s in ("0", "1")]
    assert teacher["target_val_accuracy"] == pytest.approx(statistics.fmean(values))
    assert teacher["target_val_accuracy_std"] == pytest.approx(statistics.stdev(values))
    assert teacher["steps"] == 2 and teacher["batch_size"] == 32
    assert "mean teacher (pseudo-labels)" in (figures / "mnistm-usps.md").read_text()

    # --no_train collects what finished and names the rest instead of training it
    table = dann_experiments.main(
        dann_experiments.parse_args(
            [*common, "--modes", "source_only", "mean_teacher", "dann", "--seeds", "0", "1", "2", "--no_train", *train]
        )
    )
    summary = json.loads((figures / "mnistm-usps.json").read_text())
    assert summary["not_finished"] == [
        "source_only seed 2",
        "mean_teacher seed 2",
        "dann seed 0",
        "dann seed 1",
        "dann seed 2",
    ]
    assert summary["modes"]["source_only"]["seeds"] == [0, 1]
    assert "Not finished: source_only seed 2" in (figures / "mnistm-usps.md").read_text()
    assert "| mean teacher (pseudo-labels) |" in table
    assert not (tmp_path / "runs" / "mnistm-usps-dann-seed0").exists()
