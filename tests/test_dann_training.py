"""training/train_dann.py on the embedded data: it learns, resumes, runs as 2 processes, reads SVHN .mat files."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from launch_training import launch
from scipy.io import savemat

from pipelines.dann.modeling_dann import DANNConfig, DANNModel
from training import train_dann
from training.dann.methods import MODES

REPO = Path(__file__).resolve().parents[1]


def train(output_dir, *extra):
    argv = ["--output_dir", str(output_dir), "--num_threads", "1", *map(str, extra)]
    return train_dann.main(train_dann.parse_args(argv))


def test_short_run_learns_and_resumes(tmp_path):
    common = [
        "--mode",
        "source_only",
        "--architecture",
        "report",
        "--batch_size",
        64,
        "--steps_per_epoch",
        15,
        "--learning_rate",
        1e-3,
    ]
    first = train(tmp_path, "--epochs", 1, *common)
    assert len(first["history"]) == 1
    with pytest.raises(FileExistsError, match="holds checkpoints of this run: pass --resume_from_checkpoint latest"):
        train(tmp_path, "--epochs", 2, *common)  # a fresh start would write over them
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


def test_a_folder_with_checkpoints_of_no_recorded_run_is_refused(tmp_path):
    (tmp_path / "checkpoints" / "checkpoint_0").mkdir(parents=True)  # the layout of accelerate's save_state
    with pytest.raises(FileExistsError, match="holds checkpoints, which this run would write"):
        train(tmp_path, "--epochs", 1, "--steps_per_epoch", 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]  # refused before writing anything


def test_seeded_runs_are_deterministic(tmp_path):
    args = ["--mode", "source_only", "--epochs", 1, "--steps_per_epoch", 3, "--batch_size", 32, "--augment"]
    a = train(tmp_path / "a", *args)
    b = train(tmp_path / "b", *args)
    assert a["history"][0]["loss"] == b["history"][0]["loss"]
    assert a["target_val_accuracy"] == b["target_val_accuracy"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--mode", "adversarial"], "--mode"),
        (["--target", "cifar10"], "--target"),
        (["--source", "emnist"], "--source"),
        (["--architecture", "resnet"], "--architecture"),
        (["--batch_size", "0"], "--batch_size must be at least 2"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--steps_per_epoch", "0"], "--steps_per_epoch must be at least 1"),
        (["--learning_rate", "0"], "--learning_rate must be positive"),
        (["--aug_invert", "2"], "--aug_invert is a probability"),
        (["--aug_background", "-0.1"], "--aug_background is a probability"),
        (["--aug_thicken", "1.5"], "--aug_thicken is a probability"),
        (["--conv_channels", "0", "64"], "--conv_channels needs two positive widths"),
        (["--vat_epsilon", "-1"], "--vat_epsilon must not be negative"),
        (["--confidence_threshold", "1.5"], "--confidence_threshold is a probability"),
        (["--ema_decay", "1"], "--ema_decay must be in [0, 1)"),
        (["--aug_scale", "1.5", "1.1"], "--aug_scale needs 0 < LOW <= HIGH"),
        (["--eval_every", "0"], "--eval_every must be at least 1"),
    ],
)
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_dann.parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_user_error_in_main_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "training" / "train_dann.py"),
            "--output_dir",
            str(tmp_path),
            "--batch_size",
            "100000",
            "--num_threads",
            "1",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: --batch_size 100000 exceeds")


def test_mean_teacher_resumes_exactly(tmp_path):
    # constant learning rate: the annealed one depends on --epochs, which differs between the two calls;
    # threshold 0: the pseudo-label term is active from the first step
    common = [
        "--mode",
        "mean_teacher",
        "--batch_size",
        32,
        "--steps_per_epoch",
        2,
        "--augment",
        "--confidence_threshold",
        0.0,
    ]
    straight = train(tmp_path / "straight", "--epochs", 2, *common)
    train(tmp_path / "resumed", "--epochs", 1, *common)
    resumed = train(tmp_path / "resumed", "--epochs", 2, "--resume_from_checkpoint", "latest", *common)
    strip = [{k: v for k, v in h.items() if k != "elapsed_s"} for h in straight["history"]]
    assert [{k: v for k, v in h.items() if k != "elapsed_s"} for h in resumed["history"]] == strip
    assert straight["history"][0]["pseudo_label_fraction"] == 1.0
    a = DANNModel.from_pretrained(tmp_path / "straight").state_dict()
    b = DANNModel.from_pretrained(tmp_path / "resumed").state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)  # the teacher was restored, not restarted


def test_save_model_publishes_all_files_or_none(tmp_path):
    from training.dann.output import save_model

    folder = tmp_path / "run"
    (folder / "checkpoints" / "checkpoint_0").mkdir(parents=True)
    (folder / "checkpoints" / "checkpoint_0" / "state.bin").write_bytes(b"state")
    old = DANNModel(DANNConfig(temperature=1.0))
    save_model(old, folder, "card 1", {"run": 1})
    old_weights = (folder / "model.safetensors").read_bytes()
    new = DANNModel(DANNConfig(temperature=2.0))
    with pytest.raises(TypeError):  # the metrics cannot be written after the weights already were
        save_model(new, folder, "card 2", {"run": object()})
    assert (folder / "model.safetensors").read_bytes() == old_weights
    assert json.loads((folder / "config.json").read_text())["temperature"] == 1.0
    assert (folder / "README.md").read_text() == "card 1"
    save_model(new, folder, "card 2", {"run": 2})
    assert json.loads((folder / "config.json").read_text())["temperature"] == 2.0
    assert (folder / "checkpoints" / "checkpoint_0" / "state.bin").read_bytes() == b"state"  # kept for resuming
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder left behind


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
    result = train(
        tmp_path / "run",
        "--target",
        "svhn",
        "--target_dir",
        svhn,
        "--epochs",
        1,
        "--steps_per_epoch",
        2,
        "--batch_size",
        32,
        "--holdout_per_class",
        2,
    )
    assert result["target_val_note"].startswith("last 2 train images per class")
    assert math.isfinite(result["history"][0]["loss"])


def dann_lr(learning_rate, steps_done, total_steps):
    """Ganin et al.'s annealing after `steps_done` optimiser steps: mu_0 / (1 + 10 p)^0.75."""
    return learning_rate * (1 + 10 * steps_done / total_steps) ** -0.75


@pytest.mark.parametrize("mode", MODES)
def test_lr_schedule_counts_optimiser_steps_in_every_mode(tmp_path, mode):
    result = train(
        tmp_path,
        "--mode",
        mode,
        "--epochs",
        2,
        "--steps_per_epoch",
        2,
        "--batch_size",
        32,
        "--lr_schedule",
        "dann",
        "--learning_rate",
        0.01,
    )
    assert [h["learning_rate"] for h in result["history"]] == pytest.approx([dann_lr(0.01, 2, 4), dann_lr(0.01, 4, 4)])


@pytest.mark.slow  # a 2-process accelerate launch per mode: about 12 s each
@pytest.mark.parametrize("mode", MODES)
def test_two_cpu_processes_join_one_group_and_keep_the_schedule(tmp_path, mode):
    """accelerate steps a prepared scheduler once per process unless told otherwise: on 2 processes the
    learning rate after 2 of 4 steps was 0.1656 x mu_0 (the end-of-run value) instead of 6^-0.75 = 0.2608."""
    argv = ["--output_dir", tmp_path, "--epochs", 2, "--steps_per_epoch", 2, "--batch_size", 32, "--num_threads", 1]
    argv += ["--mode", mode, "--lr_schedule", "dann", "--learning_rate", 0.01]
    done = launch("train_dann.py", argv, num_processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    assert torch.isfinite(torch.tensor(metrics["history"][0]["loss"]))
    assert metrics["history"][0]["learning_rate"] == pytest.approx(dann_lr(0.01, 2, 4))
    assert metrics["history"][1]["learning_rate"] == pytest.approx(dann_lr(0.01, 4, 4))


def test_augmentations_on_tensors():
    from training.dann.data import holdout_last_per_class, random_affine, random_invert, random_resample

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 28, 28) * 2 - 1
    assert torch.allclose(random_affine(images, generator, 0.0, (1.0, 1.0), 0.0), images, atol=1e-5)
    square = torch.full((1, 3, 28, 28), -1.0)
    square[:, :, 10:18, 10:18] = 1.0
    zoomed = random_affine(square, generator, 0.0, (2.0, 2.0), 0.0)  # zoom > 1 enlarges the digit
    assert int((zoomed > 0).sum()) == pytest.approx(4 * int((square > 0).sum()), rel=0.2)
    assert torch.equal(random_invert(images, generator, 1.0), -images)
    assert torch.equal(random_invert(images, generator, 0.0), images)

    # per channel: every channel flipped on its own; probability 1 flips all of them
    assert torch.equal(random_invert(images, generator, 1.0, per_channel=True), -images)
    mixed = random_invert(images.abs(), torch.Generator().manual_seed(3), 0.5, per_channel=True)
    signs = mixed.sign().flatten(2)
    assert torch.all(signs == signs[:, :, :1])  # one sign per channel of each image
    assert len({tuple(row) for row in signs[:, :, 0].tolist()}) > 1  # ...differing between images and channels

    # resampling: probability 0 is the identity; a checkerboard of 4x4 blocks survives a 14-px trip exactly
    # when it comes back by nearest-neighbour, and comes back blurred when it comes back by bilinear
    assert torch.equal(random_resample(images, generator, 0.0), images)
    blocks = torch.arange(28) // 4
    board = ((blocks[:, None] + blocks[None, :]) % 2).float().expand(16, 3, 28, 28) * 2 - 1
    back = random_resample(board, torch.Generator().manual_seed(0), 1.0, sizes=(14, 14))
    exact = (back == board).flatten(1).all(dim=1)
    assert 0 < int(exact.sum()) < 16  # both upscaling modes are drawn
    assert back[~exact].abs().min() < 1.0  # bilinear leaves values between the two colours
    blurred = random_resample(images, torch.Generator().manual_seed(0), 1.0, sizes=(12, 12))
    assert blurred.shape == images.shape and not torch.allclose(blurred, images)

    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    assert holdout_last_per_class(labels, 1).tolist() == [False, False, False, False, True, True]
    with pytest.raises(ValueError, match="hold out"):
        holdout_last_per_class(labels, 3)


def test_random_background_blends_the_digit_into_a_texture_as_mnistm_was_made():
    from training.dann.data import augment_with_flags, random_background, random_texture

    texture = random_texture((8, 3, 28, 28), torch.Generator().manual_seed(0))
    assert texture.shape == (8, 3, 28, 28) and texture.min() >= 0.0 and texture.max() <= 1.0
    assert texture.flatten(1).std(dim=1).min() > 0.01  # every image is textured, not flat

    # left half dark ground (-1), right half a full-brightness stroke (+1): |t - 0| on the left, |t - 1| on the
    # right, so the stroke shows the texture's inverted colours: in [-1, 1], the negated ground.
    half = torch.full((8, 3, 28, 28), -1.0)
    half[..., 14:] = 1.0
    ground = torch.full((8, 3, 28, 28), -1.0)
    on_half = random_background(half, torch.Generator().manual_seed(5), 1.0)
    on_ground = random_background(ground, torch.Generator().manual_seed(5), 1.0)
    assert torch.allclose(on_half[..., :14], on_ground[..., :14], atol=1e-6)
    assert torch.allclose(on_half[..., 14:], -on_ground[..., 14:], atol=1e-6)
    assert not torch.allclose(on_ground, ground)
    assert torch.equal(random_background(half, torch.Generator().manual_seed(5), 0.0), half)

    # only the labelled images get backgrounds: the target view's augmentation leaves them out
    no_other_augmentation = ["aug_rotation", "aug_translate", "aug_invert", "aug_channel_invert", "aug_resample"]
    args = SimpleNamespace(**dict.fromkeys(no_other_augmentation, 0.0), aug_background=1.0)
    plain = augment_with_flags(half, torch.Generator().manual_seed(1), args, (1.0, 1.0))
    assert torch.allclose(plain, half, atol=1e-5)
    assert not torch.allclose(
        augment_with_flags(half, torch.Generator().manual_seed(1), args, (1.0, 1.0), backgrounds=True), half, atol=1e-2
    )


def test_random_thicken_grows_light_strokes_by_one_pixel():
    from training.dann.data import random_thicken

    stroke = torch.full((2, 3, 28, 28), -1.0)
    stroke[:, :, 5:20, 13] = 1.0  # a one-pixel-wide vertical stroke
    thick = random_thicken(stroke, torch.Generator().manual_seed(0), 1.0)
    assert torch.equal(thick[:, :, 5:20, 12:15], torch.ones(2, 3, 15, 3))  # three pixels wide now
    assert torch.equal(thick[:, :, 4:21, 13], torch.ones(2, 3, 17)) and thick[:, :, 3, 13].max() == -1.0
    assert int((thick > 0).sum()) == 2 * 3 * 17 * 3  # and one pixel longer at each end, nothing else
    assert torch.equal(random_thicken(stroke, torch.Generator().manual_seed(0), 0.0), stroke)


def test_conv_channels_set_the_improved_network_width():
    narrow = DANNModel(DANNConfig(input_normalization="per_channel"))
    wide = DANNModel(DANNConfig(input_normalization="per_channel", conv_channels=[64, 128]))
    convs = [m.out_channels for m in wide.feature_extractor if isinstance(m, torch.nn.Conv2d)]
    assert convs == [64, 128, 128]
    assert [m.out_channels for m in narrow.feature_extractor if isinstance(m, torch.nn.Conv2d)] == [32, 64, 128]
    assert wide(torch.zeros(2, 3, 28, 28)).logits.shape == (2, 10)
    with pytest.raises(ValueError, match="conv_channels"):
        DANNConfig(conv_channels=[64])
