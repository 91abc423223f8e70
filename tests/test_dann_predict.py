"""The prediction command: a folder of mixed images -> image_name,label, with the training preprocessing."""

import csv
import logging

import numpy as np
import pytest
import torch
from PIL import Image

import hub_cards
from adapters import decode_digits, load_digits, to_model_range
from pipelines.dann import predict as dann
from pipelines.dann.modeling_dann import DANNConfig, DANNModel


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("dann-model")
    DANNModel(DANNConfig(architecture="improved")).save_pretrained(folder)
    return folder


def run_cli(pretrained, input_dir, output_csv, *extra):
    return dann.main(
        dann.parse_args(
            ["--pretrained", str(pretrained), "--input_dir", str(input_dir), "--output_csv", str(output_csv), *extra]
        )
    )


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_mixed_sizes_and_modes(pretrained, tmp_path, caplog):
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), "L").save(folder / "b_grey16.png")
    Image.fromarray(rng.integers(0, 255, (28, 28, 3), dtype=np.uint8), "RGB").save(folder / "a_rgb28.png")
    Image.fromarray(rng.integers(0, 255, (32, 32, 4), dtype=np.uint8), "RGBA").save(folder / "c_rgba32.png")
    Image.fromarray(rng.integers(0, 255, (40, 24, 3), dtype=np.uint8), "RGB").save(folder / "d_photo.JPG")
    Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8), "L").convert("P").save(folder / "e_palette.png")
    (folder / "notes.txt").write_text("not an image")
    output = tmp_path / "out" / "pred.csv"
    with caplog.at_level(logging.WARNING):
        run_cli(pretrained, folder, output)
    assert "notes.txt" in caplog.text
    rows = read_csv(output)
    assert rows[0] == ["image_name", "label"]
    assert [r[0] for r in rows[1:]] == ["a_rgb28.png", "b_grey16.png", "c_rgba32.png", "d_photo.JPG", "e_palette.png"]
    assert all(r[1] in [str(d) for d in range(10)] for r in rows[1:])


def test_predictions_match_the_training_preprocessing(pretrained, tmp_path):
    """USPS PNGs at their native 16x16 grey must be labelled exactly as the decoded training tensors are."""
    dataset = load_digits("usps", split="validation").select(range(40))
    folder = tmp_path / "usps"
    folder.mkdir()
    for i, example in enumerate(dataset):
        example["image"].save(folder / f"{i:03d}.png")
    images, _ = decode_digits(dataset, image_size=28, cache=False)
    pixel_values = dann.load_pixel_values(dann.list_images(folder))
    assert torch.equal(pixel_values, to_model_range(images))
    rows = run_cli(pretrained, folder, tmp_path / "pred.csv")
    expected = DANNModel.from_pretrained(pretrained).predict(to_model_range(images))
    assert [label for _, label, _ in rows] == expected.tolist()


def test_confidence_column_uses_the_stored_temperature(tmp_path):
    torch.manual_seed(1)
    model = DANNModel(DANNConfig(architecture="improved", temperature=2.5))
    model.save_pretrained(tmp_path / "model")
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (28, 28, 3), dtype=np.uint8), "RGB").save(folder / f"{i}.png")
    run_cli(tmp_path / "model", folder, tmp_path / "plain.csv")
    assert read_csv(tmp_path / "plain.csv")[0] == ["image_name", "label"]  # unchanged without the flag
    run_cli(tmp_path / "model", folder, tmp_path / "conf.csv", "--with_confidence")
    rows = read_csv(tmp_path / "conf.csv")
    assert rows[0] == ["image_name", "label", "confidence"]
    model.eval()
    with torch.no_grad():
        logits = model(dann.load_pixel_values(dann.list_images(folder))).logits
    # by hand: exp(l / T) / sum exp(l / T) at the arg max, not the raw softmax
    scaled = torch.exp(logits / 2.5)
    expected = (scaled / scaled.sum(dim=1, keepdim=True)).max(dim=1).values
    assert [float(r[2]) for r in rows[1:]] == pytest.approx(expected.tolist(), abs=1e-4)
    assert [int(r[1]) for r in rows[1:]] == logits.argmax(dim=1).tolist()
    raw = logits.softmax(dim=1).max(dim=1).values
    assert not torch.allclose(raw, expected, atol=1e-3)


def test_empty_folder(pretrained, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        run_cli(pretrained, tmp_path, tmp_path / "out" / "pred.csv")


def test_folder_without_images(pretrained, tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.csv").write_text("image_name,label\n")
    with pytest.raises(ValueError, match="no PNG or JPEG"):
        run_cli(pretrained, tmp_path, tmp_path / "out.csv")


def test_unreadable_image_is_named(pretrained, tmp_path):
    Image.new("L", (16, 16)).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="broken.png"):
        run_cli(pretrained, tmp_path, tmp_path / "out" / "pred.csv")
    assert not (tmp_path / "out" / "pred.csv").exists()


def test_missing_folder_and_checkpoint(pretrained, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_cli(pretrained, tmp_path / "nope", tmp_path / "pred.csv")
    Image.new("L", (16, 16)).save(tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="config.json"):
        run_cli(tmp_path, tmp_path, tmp_path / "pred.csv")


def test_shipped_checkpoint_labels_embedded_usps(tmp_path):
    """hub_cards/dann-mnistm-usps through the prediction command on USPS PNGs at their native 16x16."""
    shipped = hub_cards.path("dann-mnistm-usps")
    dataset = load_digits("usps", split="validation")
    for i, example in enumerate(dataset):
        example["image"].save(tmp_path / f"{i:03d}.png")
    rows = run_cli(shipped, tmp_path, tmp_path / "out" / "pred.csv")
    correct = sum(label == dataset[int(name[:3])]["label"] for name, label, _ in rows)
    assert correct / len(rows) > 0.93
