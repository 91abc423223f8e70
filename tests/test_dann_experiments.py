"""training.report.dann_experiments: three tiny runs on the embedded data -> table (Markdown, JSON), t-SNE PNGs."""

import json

from PIL import Image

from training.report import dann_experiments


def test_experiments_write_table_and_tsne(tmp_path):
    figures = tmp_path / "figures"
    argv = ["--runs_dir", str(tmp_path / "runs"), "--figures_dir", str(figures), "--tsne_per_domain", "60",
            "--", "--epochs", "1", "--steps_per_epoch", "3", "--batch_size", "32", "--num_threads", "1"]
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
    dann_run = tmp_path / "runs" / "mnistm-usps-dann" / "model.safetensors"
    before = dann_run.stat().st_mtime_ns
    dann_experiments.main(dann_experiments.parse_args(argv))
    assert dann_run.stat().st_mtime_ns == before
