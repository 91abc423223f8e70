"""The digit classifier, its training script and the scoring command (pipelines.digit_classifier.score)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image

import hub_cards
from pipelines.digit_classifier.modeling_digit_classifier import DigitClassifier
from pipelines.digit_classifier.score import accuracy_report, cli, format_report, read_labelled_images, score_folder
from training import train_digit_classifier

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = hub_cards.path("mnistm-digit-classifier")


def tiny_classifier(seed=0):
    torch.manual_seed(seed)
    return DigitClassifier(block_channels=(4, 8), dropout=0.0).eval()


def write_png(folder: Path, name: str, value: int, size=28, mode="RGB"):
    Image.new(mode, (size, size), value if mode == "L" else (value,) * 3).save(folder / name)


def brightness_coded_predict(pixel_values, batch_size=512):
    """A stand-in predictor whose answer we know: an image of grey level 20 * d + 10 is read as digit d."""
    levels = ((pixel_values[:, 0, 0, 0] + 1) * 127.5).round().long()
    return (levels - 10) // 20


def test_save_load_round_trip(tmp_path):
    model = tiny_classifier()
    images = torch.rand(3, 3, 28, 28) * 2 - 1
    model.save_pretrained(tmp_path / "clf")
    loaded = DigitClassifier.from_pretrained(tmp_path / "clf").eval()
    assert (tmp_path / "clf" / "model.safetensors").exists()
    assert loaded.config.block_channels == [4, 8] and loaded.config.num_classes == 10
    torch.testing.assert_close(loaded(images), model(images))


def test_folders_saved_before_the_transformers_port_still_load(tmp_path):
    from safetensors.torch import save_file

    model = tiny_classifier()
    config = {
        "_class_name": "DigitClassifier",
        "_diffusers_version": "0.42.1",
        "block_channels": [4, 8],
        "dropout": 0.0,
        "image_size": 28,
        "in_channels": 3,
        "num_classes": 10,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(model.state_dict(), str(tmp_path / "diffusion_pytorch_model.safetensors"))
    images = torch.rand(3, 3, 28, 28) * 2 - 1
    torch.testing.assert_close(DigitClassifier.from_pretrained(tmp_path)(images), model(images))
    assert DigitClassifier.from_pretrained(tmp_path, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_forward_rejects_wrong_channels():
    with pytest.raises(ValueError, match="shape"):
        tiny_classifier()(torch.zeros(2, 1, 28, 28))


def test_images_to_tensor_converts_any_mode_and_size():
    model = tiny_classifier()
    images = [Image.new("L", (16, 16), 255), Image.new("RGBA", (32, 32), (0, 0, 0, 255)), Image.new("RGB", (28, 28))]
    batch = model.images_to_tensor(images)
    assert batch.shape == (3, 3, 28, 28)
    assert torch.all(batch[0] == 1.0) and torch.all(batch[1] == -1.0)


def test_accuracy_report_counts():
    report = accuracy_report(torch.tensor([0, 1, 1, 2, 2, 2]), torch.tensor([0, 1, 2, 2, 2, 0]))
    assert report["correct"] == 4 and report["total"] == 6
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["per_digit"]["0"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert report["per_digit"]["2"]["accuracy"] == pytest.approx(2 / 3)
    assert "3" not in report["per_digit"]  # digits that never occur are not reported
    assert report["confusion_matrix"][0][2] == 1 and report["confusion_matrix"][2][1] == 1
    assert format_report(report).splitlines()[-1].split() == ["all", "4", "6", "0.6667"]


def test_score_folder_counts_exactly(tmp_path):
    # (file label, digit the stand-in predictor will read) for each image
    cases = [(0, 0), (0, 0), (0, 3), (3, 3), (7, 7), (7, 1), (7, 7), (9, 9)]
    for index, (label, shown) in enumerate(cases):
        write_png(tmp_path, f"{label}_{index:03d}.png", 20 * shown + 10, size=32, mode="L" if index % 2 else "RGB")
    (tmp_path / "notes.txt").write_text("not an image, not scored")
    model = tiny_classifier()
    model.predict = brightness_coded_predict
    report = score_folder(model, tmp_path)
    assert (report["correct"], report["total"]) == (6, 8)
    assert report["per_digit"]["0"] == {"correct": 2, "total": 3, "accuracy": pytest.approx(2 / 3)}
    assert report["per_digit"]["7"]["correct"] == 2 and report["per_digit"]["9"]["accuracy"] == 1.0
    assert sorted((m["file"], m["predicted"]) for m in report["misclassified"]) == [("0_002.png", 3), ("7_005.png", 1)]


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda d: None, ValueError, "no \\*.png files"),
        (lambda d: write_png(d, "x_001.png", 0), ValueError, "do not start with the digit"),
        (lambda d: (d / "3_001.png").write_bytes(b"not a png"), ValueError, "unreadable image"),
    ],
)
def test_bad_folders_raise_clear_errors(tmp_path, make, error, message):
    make(tmp_path)
    with pytest.raises(error, match=message):
        read_labelled_images(tmp_path)


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_labelled_images(tmp_path / "nowhere")


def test_cli_prints_table_writes_json_and_fails_cleanly(tmp_path, capsys):
    tiny_classifier().save_pretrained(tmp_path / "clf")
    images = tmp_path / "images"
    images.mkdir()
    for digit in range(3):
        write_png(images, f"{digit}_001.png", 40 * digit)
    command = [sys.executable, "-m", "pipelines.digit_classifier", "--pretrained", str(tmp_path / "clf")]
    done = subprocess.run(
        command + ["--images", str(images), "--json", str(tmp_path / "r.json")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["total"] == 3 and len(report["misclassified"]) == 3 - report["correct"]
    assert "digit  correct  total  accuracy" in done.stdout and "  all " in done.stdout

    (images / "bad.png").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        cli(["--pretrained", str(tmp_path / "clf"), "--images", str(images)])
    assert exit_info.value.code == 2
    assert re.match(r"^error: 1 file name\(s\) .* do not start with the digit", capsys.readouterr().err)


def test_augment_uses_the_shared_random_affine_and_is_identity_when_off():
    images = torch.rand(4, 3, 28, 28) * 2 - 1
    off = train_digit_classifier.parse_args(["--max_shift", "0", "--max_rotation", "0"])
    assert train_digit_classifier.random_shift_and_rotation(images, off) is images
    args = train_digit_classifier.parse_args([])
    moved = train_digit_classifier.random_shift_and_rotation(images, args)
    assert moved.shape == images.shape and not torch.allclose(moved, images)
    assert moved.min() >= -1 - 1e-5 and moved.max() <= 1 + 1e-5
    torch.manual_seed(3)  # draws from torch's global generator, which accelerate checkpoints
    first = train_digit_classifier.random_shift_and_rotation(images, args)
    torch.manual_seed(3)
    assert torch.equal(first, train_digit_classifier.random_shift_and_rotation(images, args))


@pytest.mark.parametrize("option", ["--max_train_steps", "--train_batch_size", "--checkpointing_steps"])
def test_training_arguments_are_checked_first(option):
    # 0 is refused, not read as "unset": `args.max_train_steps or epochs` would silently train by epochs.
    with pytest.raises(ValueError, match=f"{option} must be >= 1, got 0"):
        train_digit_classifier.parse_args([option, "0"])


def test_training_script_trains_saves_card_and_resumes(tmp_path):
    common = [
        "--block_channels",
        "4",
        "8",
        "--train_batch_size",
        "32",
        "--checkpointing_steps",
        "3",
        "--checkpoints_total_limit",
        "1",
        "--project_dir",
        str(tmp_path / "run"),
        "--output_dir",
        str(tmp_path / "model"),
        "--resume_from_checkpoint",
        "latest",
    ]
    train_digit_classifier.main(train_digit_classifier.parse_args(common + ["--max_train_steps", "6"]))
    assert [p.name for p in (tmp_path / "run").glob("checkpoint-*")] == ["checkpoint-6"]
    train_digit_classifier.main(train_digit_classifier.parse_args(common + ["--max_train_steps", "9"]))
    assert [p.name for p in (tmp_path / "run").glob("checkpoint-*")] == ["checkpoint-9"]

    folder = tmp_path / "model"
    results = json.loads((folder / "eval_results.json").read_text())
    assert results["split"] == "validation" and results["total"] == 500
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "image-classification"
    assert card.data.eval_results[0].metric_value == round(results["accuracy"], 4)
    assert (folder / "modeling_digit_classifier.py").is_file() and (folder / "preprocessor_config.json").is_file()
    assert Image.open(folder / "confusion_matrix.png").size[0] > 100
    assert DigitClassifier.from_pretrained(folder).config.block_channels == [4, 8]
    assert not list(tmp_path.glob(".model-*"))  # the staging folder was swapped in, not left behind


def test_shipped_classifier_recognises_real_mnistm_digits():
    from adapters import decode_digits, load_digits, to_model_range

    if not SHIPPED.is_dir():
        pytest.fail(f"the shipped classifier {SHIPPED} is missing")
    model = DigitClassifier.from_pretrained(SHIPPED)
    images, labels = decode_digits(load_digits("mnistm", split="validation"), image_size=28)
    accuracy = (model.predict(to_model_range(images)) == labels).float().mean().item()
    assert accuracy >= 0.97, accuracy
    card = (SHIPPED / "README.md").read_text()
    assert "Validation accuracy" in card and (SHIPPED / "confusion_matrix.png").exists()
