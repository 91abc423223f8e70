"""Readers that turn each on-disk digit format into a `datasets.Dataset`.

Every reader returns the same schema, `image` (datasets.Image) and `label` (ClassLabel "0".."9"),
so that the rest of the project never needs to know where a dataset came from.

| format              | what it looks like                                           |
|---------------------|--------------------------------------------------------------|
| HF dataset folder   | parquet files (`data/train-*.parquet`, `train.parquet`, ...) or `save_to_disk` output |
| course layout       | `<root>/data/*.png` + `train.csv` / `val.csv` with `image_name,label` |
| SVHN cropped digits | `train_32x32.mat` / `test_32x32.mat`: X [32,32,3,N] uint8, y [N,1], label 10 = digit 0 |
| USPS                | `usps.h5`: groups `train` / `test`, each `data` [N,256] in [0,1] and `target` [N] |
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import datasets
import numpy as np
import pyarrow
import pyarrow.parquet
from PIL import Image

DIGIT_NAMES = [str(d) for d in range(10)]
DIGIT_FEATURES = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=DIGIT_NAMES)})

# The course names its validation file val.csv; the HF convention is "validation".
SPLIT_ALIASES = {"val": "validation", "valid": "validation", "dev": "validation"}


class DigitSourceError(ValueError):
    """A digit source exists but cannot be read as a digit dataset (bad columns, labels, files...)."""


def canonical_split(split: str) -> str:
    return SPLIT_ALIASES.get(split, split)


def check_labels(labels, where: str) -> list[int]:
    """Labels as ints in 0-9; anything else is an error that names the offending value."""
    checked = []
    for i, label in enumerate(labels):
        try:
            value = int(label)
        except (TypeError, ValueError):
            raise DigitSourceError(f"{where}: label {label!r} of row {i} is not an integer digit") from None
        if not 0 <= value <= 9 or str(label).strip() not in (str(value), f"{value}.0"):
            raise DigitSourceError(f"{where}: label {label!r} of row {i} is outside the digits 0-9")
        checked.append(value)
    if not checked:
        raise DigitSourceError(f"{where}: the dataset is empty")
    return checked


# Lossless formats only: the decoded pixels must be the ones encoded. WebP method 2 is about 23% smaller than PNG
# on 28x28 MNIST-M images and under 1 ms an image (method 6 is no smaller and about 50 times slower).
IMAGE_FORMATS = {"png": {"format": "PNG"}, "webp": {"format": "WEBP", "lossless": True, "quality": 100, "method": 2}}


def _encoded(array: np.ndarray, image_format: str) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, **IMAGE_FORMATS[image_format])
    return {"bytes": buffer.getvalue(), "path": None}


def from_arrays(images: np.ndarray, labels, where: str, image_format: str = "png") -> datasets.Dataset:
    """uint8 images [N,H,W] or [N,H,W,C] + labels -> Dataset with losslessly encoded images (IMAGE_FORMATS)."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}")
    labels = check_labels(labels, where)
    if len(images) != len(labels):
        raise DigitSourceError(f"{where}: {len(images)} images but {len(labels)} labels")
    encoded = [_encoded(image, image_format) for image in images]
    return datasets.Dataset.from_dict({"image": encoded, "label": labels}, features=DIGIT_FEATURES)


def standardise(dataset: datasets.Dataset, where: str) -> datasets.Dataset:
    """Check columns and labels of a dataset read by `datasets` and cast it to the common schema."""
    columns = set(dataset.column_names)
    missing = {"image", "label"} - columns
    if missing:
        raise DigitSourceError(
            f"{where}: missing column(s) {sorted(missing)}; found {sorted(columns)}. "
            "A digit dataset needs an 'image' column and a 'label' column with digits 0-9."
        )
    if len(dataset) == 0:
        raise DigitSourceError(f"{where}: the dataset is empty")
    label_feature = dataset.features["label"]
    if isinstance(label_feature, datasets.ClassLabel):
        if label_feature.names != DIGIT_NAMES:
            # Re-map by name so that a ClassLabel with names "0".."9" in another order stays correct.
            names = label_feature.names
            check_labels(names, f"{where} (class names)")
            dataset = dataset.cast_column("label", datasets.Value("int64"))
            dataset = dataset.map(lambda batch: {"label": [int(names[v]) for v in batch["label"]]}, batched=True)
    else:
        check_labels(dataset["label"], where)
    extra = columns - {"image", "label"}
    if extra:
        dataset = dataset.remove_columns(sorted(extra))
    return dataset.cast(DIGIT_FEATURES)


def check_parquet_files(files) -> None:
    """Read each parquet file's footer, so a truncated or corrupt file is named before `datasets` trips on it.

    Reading the footer costs one small read per file; without it pyarrow's ArrowInvalid surfaces from deep
    inside `datasets` with no file name.
    """
    for path in files:
        try:
            pyarrow.parquet.read_metadata(path)
        except (pyarrow.ArrowException, OSError) as error:
            raise DigitSourceError(
                f"{path} is a corrupt or truncated parquet file ({error}); download or export it again"
            ) from error


def load_parquet(data_files, where: str, **kwargs):
    """`datasets.load_dataset("parquet", ...)` (or of a folder) with corrupt files reported by name."""
    try:
        if data_files is None:
            return datasets.load_dataset(where, **kwargs)
        return datasets.load_dataset("parquet", data_files=data_files, **kwargs)
    except (pyarrow.ArrowException, datasets.exceptions.DatasetGenerationError) as error:
        # The footers were fine (check_parquet_files), so the damage is inside the data pages.
        raise DigitSourceError(f"{where}: corrupt parquet data ({error}); download or export it again") from error


def read_hf_folder(root: Path, split: str) -> datasets.Dataset:
    """A local HF dataset: parquet files (as on the Hub) or a `save_to_disk` folder."""
    where = str(root)
    if (root / "dataset_dict.json").exists() or (root / "dataset_info.json").exists():
        loaded = datasets.load_from_disk(str(root))
    else:
        check_parquet_files(sorted(root.rglob("*.parquet")))
        loaded = load_parquet(None, where)
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DigitSourceError(f"{where}: no split {split!r}; available: {sorted(loaded)}")
        return standardise(loaded[split], f"{where} [{split}]")
    return standardise(loaded, where)


def read_course_layout(root: Path, split: str) -> datasets.Dataset:
    """The course's `<root>/data/*.png` + `train.csv` / `val.csv` (columns image_name,label)."""
    csv_name = {"train": "train.csv", "validation": "val.csv", "test": "test.csv"}.get(split)
    csv_path = root / csv_name if csv_name else None
    if csv_path is None or not csv_path.exists():
        available = sorted(p.name for p in root.glob("*.csv"))
        raise FileNotFoundError(f"{root}: no CSV for split {split!r} (expected {csv_name}); found {available}")
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"image_name", "label"} - set(reader.fieldnames or [])
        if missing:
            raise DigitSourceError(
                f"{csv_path}: missing column(s) {sorted(missing)}; found {reader.fieldnames}. "
                "The course CSVs have the header image_name,label."
            )
        rows = list(reader)
    labels = check_labels([row["label"] for row in rows], str(csv_path))
    paths = [root / "data" / row["image_name"] for row in rows]
    absent = [p.name for p in paths if not p.exists()]
    if absent:
        raise FileNotFoundError(
            f"{csv_path}: {len(absent)} image(s) listed but not in {root / 'data'}, e.g. {absent[:3]}"
        )
    return datasets.Dataset.from_dict({"image": [str(p) for p in paths], "label": labels}, features=DIGIT_FEATURES)


def read_svhn_mat(path: Path) -> datasets.Dataset:
    """SVHN cropped digits in the original MATLAB format; the label 10 stands for the digit 0."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as error:  # scipy raises several unrelated types for corrupt files
        raise DigitSourceError(f"{path}: not a readable SVHN .mat file ({error})") from error
    if "X" not in mat or "y" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DigitSourceError(f"{path}: SVHN .mat files hold arrays 'X' and 'y'; found {found}")
    images = np.ascontiguousarray(np.transpose(mat["X"], (3, 0, 1, 2))).astype(np.uint8)
    labels = np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    labels[labels == 10] = 0
    return from_arrays(images, labels.tolist(), str(path))


def read_usps_h5(path: Path, split: str) -> datasets.Dataset:
    """USPS as the common `usps.h5`: 16x16 grey digits stored as floats in [0, 1]."""
    import h5py

    try:
        handle = h5py.File(str(path), "r")
    except OSError as error:
        raise DigitSourceError(f"{path}: not a readable HDF5 file ({error})") from error
    with handle:
        if split not in handle:
            raise DigitSourceError(f"{path}: no group {split!r}; available: {sorted(handle.keys())}")
        group = handle[split]
        missing = {"data", "target"} - set(group.keys())
        if missing:
            raise DigitSourceError(f"{path} [{split}]: missing dataset(s) {sorted(missing)}")
        pixels = np.asarray(group["data"], dtype=np.float64)
        labels = np.asarray(group["target"]).reshape(-1).tolist()
    side = math.isqrt(pixels.shape[-1])
    if side * side != pixels.shape[-1]:
        raise DigitSourceError(f"{path} [{split}]: rows of {pixels.shape[-1]} values are not square images")
    scale = 255.0 if pixels.max() <= 1.0 else 1.0
    images = np.clip(pixels * scale + 0.5, 0, 255).astype(np.uint8).reshape(-1, side, side)
    return from_arrays(images, labels, f"{path} [{split}]")
