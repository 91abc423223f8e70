"""training/train_dann.py on the embedded data: it learns, resumes, runs as 2 processes, reads SVHN .mat files."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from pipelines.dann.modeling_dann import DANNModel
from training import train_dann

REPO = Path(__file__).resolve().parents[1]


def train(output_dir, *extra):
    argv = ["--output_dir", str(output_dir), "--num_threads", "1", *map(str, extra)]
    return train_dann.main(train_dann.parse_args(argv))


def test_short_run_learns_and_resumes(tmp_path):
    common = ["--mode", "source_only", "--architecture", "report", "--batch_size", 64, "--steps_per_epoch", 15,
              "--learning_rate", 1e-3]
    first = train(tmp_path, "--epochs", 1, *common)
    assert len(first["history"]) == 1
    resumed = train(tmp_path, "--epochs", 2, "--resume_from_checkpoint", "latest", *common)
    history = resumed["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0] == first["history"][0]  # the first epoch came from the checkpoint, not retrained
    assert all(math.isfinite(h["loss"]) for h in history)
    assert resumed["target_val_accuracy"] > 0.2  # 10 classes: chance is 0.1
    assert resumed["source_val_accuracy"] > 0.3

    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: transformers" in card and "metrics:" in card
    assert "datasets:" in card and (tmp_path / "modeling_dann.py").is_file()  # the folder carries its code
    assert f"{resumed['target_val_accuracy']:.4f}" in card
    model = DANNModel.from_pretrained(tmp_path)
    assert model.config.architecture == "report"


def test_fresh_run_refuses_to_overwrite_checkpoints(tmp_path):
    (tmp_path / "checkpoints" / "checkpoint_0").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="resume_from_checkpoint"):
        train(tmp_path, "--epochs", 1, "--steps_per_epoch", 1)


def test_seeded_runs_are_deterministic(tmp_path):
    args = ["--mode", "source_only", "--epochs", 1, "--steps_per_epoch", 3, "--batch_size", 32, "--augment"]
    a = train(tmp_path / "a", *args)
    b = train(tmp_path / "b", *args)
    assert a["history"][0]["loss"] == b["history"][0]["loss"]
    assert a["target_val_accuracy"] == b["target_val_accuracy"]


@pytest.mark.parametrize("argv, message", [
    (["--mode", "adversarial"], "--mode"),
    (["--target", "cifar10"], "--target"),
    (["--source", "emnist"], "--source"),
    (["--architecture", "resnet"], "--architecture"),
])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        train_dann.parse_args(argv)
    assert message in capsys.readouterr().err


def write_svhn_mat(path: Path, per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(1, 11), per_class)  # SVHN stores the digit 0 as label 10
    images = rng.integers(0, 256, size=(32, 32, 3, len(labels)), dtype=np.uint8)
    savemat(path, {"X": images, "y": labels.reshape(-1, 1).astype(np.uint8)})


def test_svhn_target_from_mat_files(tmp_path):
    svhn = tmp_path / "svhn"
    svhn.mkdir()
    write_svhn_mat(svhn / "train_32x32.mat", per_class=6, seed=0)
    write_svhn_mat(svhn / "test_32x32.mat", per_class=2, seed=1)
    result = train(tmp_path / "run", "--target", "svhn", "--target_dir", svhn, "--epochs", 1,
                   "--steps_per_epoch", 2, "--batch_size", 32, "--holdout_per_class", 2)
    assert result["target_val_note"].startswith("last 2 train images per class")
    assert math.isfinite(result["history"][0]["loss"])


def test_two_cpu_processes_join_one_group(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               str(REPO / "training" / "train_dann.py"), "--output_dir", str(tmp_path), "--epochs", "1",
               "--steps_per_epoch", "2", "--batch_size", "32", "--num_threads", "1"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    assert torch.isfinite(torch.tensor(metrics["history"][0]["loss"]))


def test_augmentations_on_tensors():
    from training.dann_data import holdout_last_per_class, random_affine, random_invert

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 28, 28) * 2 - 1
    assert torch.allclose(random_affine(images, generator, 0.0, (1.0, 1.0), 0.0), images, atol=1e-5)
    square = torch.full((1, 3, 28, 28), -1.0)
    square[:, :, 10:18, 10:18] = 1.0
    zoomed = random_affine(square, generator, 0.0, (2.0, 2.0), 0.0)  # zoom > 1 enlarges the digit
    assert int((zoomed > 0).sum()) == pytest.approx(4 * int((square > 0).sum()), rel=0.2)
    assert torch.equal(random_invert(images, generator, 1.0), -images)
    assert torch.equal(random_invert(images, generator, 0.0), images)

    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    assert holdout_last_per_class(labels, 1).tolist() == [False, False, False, False, True, True]
    with pytest.raises(ValueError, match="hold out"):
        holdout_last_per_class(labels, 3)
