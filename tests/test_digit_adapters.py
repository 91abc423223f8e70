"""Every digit source loads through `load_digits` with the right shapes and labels; bad input fails clearly."""

import csv

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

import hub_cards
from adapters import (
    DigitSourceError,
    HubUnavailableError,
    decode_digits,
    digit_transform,
    load_digits,
    to_model_range,
    to_uint8,
)

EMBEDDED_USPS = hub_cards.path("usps-mini")


def _check_decoded(dataset, expected_len=None):
    images, labels = decode_digits(dataset, image_size=28)
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 28, 28)
    assert labels.dtype == torch.int64 and len(labels) == len(images)
    assert 0 <= int(labels.min()) and int(labels.max()) <= 9
    if expected_len is not None:
        assert len(images) == expected_len
    return images, labels


# ---- the real shared data -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,folder,split,size,mode,length",
    [
        ("mnistm", "mnistm", "train", (32, 32), "RGB", 50000),
        ("mnistm", "mnistm", "validation", (32, 32), "RGB", 9001),
        ("usps", "usps", "train", (16, 16), "L", 6291),
        ("usps", "usps", "val", (16, 16), "L", 1000),
        ("mnist", "mnist5k", "train", (28, 28), "L", 5000),
    ],
)
def test_shared_parquet_folders(shared_data, name, folder, split, size, mode, length):
    dataset = load_digits(name, source=shared_data / folder, split=split)
    assert len(dataset) == length
    assert dataset[0]["image"].size == size and dataset[0]["image"].mode == mode
    _check_decoded(dataset.select(range(64)), expected_len=64)


def test_grey_digits_become_rgb_with_equal_channels(shared_data):
    images, _ = _check_decoded(load_digits("usps", source=shared_data / "usps").select(range(16)))
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])


# ---- the embedded subsets ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,train_len,val_len", [("mnistm", 2000, 500), ("usps", 1000, 300)])
def test_embedded_subsets_are_class_balanced(name, train_len, val_len):
    for split, length in (("train", train_len), ("validation", val_len)):
        _, labels = _check_decoded(load_digits(name, split=split), expected_len=length)
        assert labels.bincount(minlength=10).tolist() == [length // 10] * 10


def test_decode_cache_returns_identical_tensors():
    dataset = load_digits("usps", split="validation")
    first = decode_digits(dataset)
    second = decode_digits(dataset)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_transform_scales_to_minus_one_one():
    dataset = load_digits("mnistm", split="validation").with_transform(digit_transform(28))
    example = dataset[0]
    assert example["pixel_values"].shape == (3, 28, 28)
    assert -1.0 <= float(example["pixel_values"].min()) < float(example["pixel_values"].max()) <= 1.0
    images, _ = decode_digits(load_digits("mnistm", split="validation").select(range(1)))
    assert torch.allclose(to_model_range(images)[0], example["pixel_values"])
    assert torch.equal(to_uint8(to_model_range(images)), images)


# ---- the course layout ------------------------------------------------------------------------------


def _write_course_layout(root, rows, image_size=28):
    (root / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split_file, split_rows in rows.items():
        with open(root / split_file, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_name", "label"])
            for name, label in split_rows:
                writer.writerow([name, label])
                pixels = rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / "data" / name)
    return root


def test_course_layout_train_and_val(tmp_path):
    root = _write_course_layout(
        tmp_path / "usps",
        {"train.csv": [(f"{i:05d}.png", i % 10) for i in range(12)], "val.csv": [("val_0.png", 7), ("val_1.png", 3)]},
    )
    train = load_digits("usps", source=root, split="train")
    _, labels = _check_decoded(train, expected_len=12)
    assert labels.tolist() == [i % 10 for i in range(12)]
    _, val_labels = _check_decoded(load_digits("usps", source=root, split="val"), expected_len=2)
    assert val_labels.tolist() == [7, 3]


# ---- original release files -------------------------------------------------------------------------


def test_svhn_mat_maps_label_ten_to_zero(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (32, 32, 3, 5), dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": images, "y": np.array([[10], [1], [2], [9], [10]], dtype=np.uint8)})
    savemat(tmp_path / "test_32x32.mat", {"X": images[..., :2], "y": np.array([[3], [4]], dtype=np.uint8)})

    train = load_digits("svhn", source=tmp_path, split="train")
    decoded, labels = _check_decoded(train, expected_len=5)
    assert labels.tolist() == [0, 1, 2, 9, 0]
    assert np.array_equal(np.asarray(train[1]["image"]), images[..., 1])  # HWC order kept, no transposition
    assert load_digits("svhn", source=tmp_path / "test_32x32.mat")["label"] == [3, 4]
    with pytest.raises(FileNotFoundError, match="validation"):
        load_digits("svhn", source=tmp_path, split="validation")


def test_usps_h5(tmp_path):
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "usps.h5", "w") as handle:
        for split, n in (("train", 6), ("test", 3)):
            group = handle.create_group(split)
            group.create_dataset("data", data=rng.random((n, 256)))
            group.create_dataset("target", data=np.arange(n) % 10)
    train = load_digits("usps", source=tmp_path, split="train")
    assert train[0]["image"].size == (16, 16)
    _, labels = _check_decoded(train, expected_len=6)
    assert labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert load_digits("usps", source=tmp_path / "usps.h5", split="test")["label"] == [0, 1, 2]


# ---- bad input --------------------------------------------------------------------------------------


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown digit dataset 'kmnist'"):
        load_digits("kmnist")


def test_missing_path_is_reported():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_digits("usps", source="./no/such/folder")


def test_unknown_source_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DigitSourceError, match="not a known digit source"):
        load_digits("usps", source=tmp_path)


def test_hub_offline_says_how_to_use_a_local_copy():
    with pytest.raises(HubUnavailableError, match="source=PATH"):
        load_digits("svhn")


def test_course_layout_missing_image_file(tmp_path):
    root = _write_course_layout(tmp_path / "d", {"train.csv": [("a.png", 1)]})
    with open(root / "train.csv", "a") as handle:
        handle.write("ghost.png,2\n")
    with pytest.raises(FileNotFoundError, match="ghost.png"):
        load_digits("usps", source=root)


def test_course_layout_missing_column(tmp_path):
    root = _write_course_layout(tmp_path / "d", {"train.csv": [("a.png", 1)]})
    (root / "train.csv").write_text("image_name,digit\na.png,1\n")
    with pytest.raises(DigitSourceError, match=r"missing column\(s\) \['label'\]"):
        load_digits("usps", source=root)


def test_label_outside_digits(tmp_path):
    root = _write_course_layout(tmp_path / "d", {"train.csv": [("a.png", 1), ("b.png", 11)]})
    with pytest.raises(DigitSourceError, match="label '11' of row 1 is outside the digits 0-9"):
        load_digits("usps", source=root)


def test_empty_dataset(tmp_path):
    root = _write_course_layout(tmp_path / "d", {"train.csv": []})
    with pytest.raises(DigitSourceError, match="empty"):
        load_digits("usps", source=root)


def test_unreadable_image_names_the_row(tmp_path):
    root = _write_course_layout(tmp_path / "d", {"train.csv": [("a.png", 1), ("b.png", 2)]})
    (root / "data" / "b.png").write_bytes(b"definitely not a png")
    dataset = load_digits("usps", source=root)
    with pytest.raises(DigitSourceError, match="row 1: unreadable image"):
        decode_digits(dataset)


def test_parquet_without_label_column(tmp_path):
    import datasets

    folder = tmp_path / "unlabelled"
    folder.mkdir()
    datasets.Dataset.from_dict({"image": [Image.new("L", (8, 8))]}).to_parquet(str(folder / "train.parquet"))
    with pytest.raises(DigitSourceError, match=r"missing column\(s\) \['label'\]"):
        load_digits("mnist", source=folder)


def test_svhn_mat_without_arrays(tmp_path):
    savemat(tmp_path / "train_32x32.mat", {"images": np.zeros((2, 2))})
    with pytest.raises(DigitSourceError, match="'X' and 'y'"):
        load_digits("svhn", source=tmp_path)


def test_svhn_label_outside_digits(tmp_path):
    images = np.zeros((32, 32, 3, 2), dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": images, "y": np.array([[1], [12]], dtype=np.uint8)})
    with pytest.raises(DigitSourceError, match="outside the digits"):
        load_digits("svhn", source=tmp_path)


@pytest.mark.parametrize("content", [b"", b"PAR1 not really parquet PAR1", b"a CSV file,\n1,2\n"])
def test_corrupt_parquet_names_the_file(tmp_path, content):
    # Regression: a truncated or corrupt parquet file surfaced as a raw pyarrow ArrowInvalid without its name.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-00000-of-00001.parquet").write_bytes(content)
    with pytest.raises(DigitSourceError, match=r"train-00000-of-00001\.parquet is a corrupt or truncated parquet"):
        load_digits("usps", source=tmp_path)
    with pytest.raises(DigitSourceError, match="corrupt or truncated parquet file"):
        load_digits("usps", source=tmp_path / "data" / "train-00000-of-00001.parquet")


def test_truncated_copy_of_a_real_parquet_is_refused(tmp_path):
    data = (EMBEDDED_USPS / "data" / "train-00000-of-00001.parquet").read_bytes()
    (tmp_path / "train.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DigitSourceError, match="corrupt or truncated"):
        load_digits("usps", source=tmp_path / "train.parquet")


def test_to_uint8_says_its_range_and_rounds_like_torchvision():
    unit = torch.tensor([0.0, 0.5 / 255, 0.25, 1.0, 1.5, -0.1])
    assert to_uint8(unit, value_range=(0, 1)).tolist() == [0, 1, 64, 255, 255, 0]  # floor(x * 255 + 0.5)
    assert torch.equal(to_uint8(unit * 2 - 1), to_uint8(unit, value_range=(0, 1)))  # default: model range
    with pytest.raises(ValueError, match="value_range"):
        to_uint8(unit, value_range=(1, 0))
