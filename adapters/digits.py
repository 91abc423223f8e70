"""One entry point for the digit datasets: MNIST-M, SVHN, USPS and MNIST.

    ds = load_digits("usps")                                      # embedded subset, offline
    ds = load_digits("mnistm", source="../shared/data/mnistm")    # local HF parquet folder
    ds = load_digits("svhn", source="hw2_data/digits/svhn")       # the course layout
    ds = load_digits("svhn", source="train_32x32.mat")            # the original release
    ds = load_digits("mnistm", source="hub")                      # the Hub (needs internet)
    images, labels = decode_digits(ds, image_size=28)             # uint8 [N,3,28,28], int64 [N]

Whatever the source, the dataset has an `image` column (PIL, raw size and mode) and a `label`
column (ClassLabel "0".."9"). Resizing, grey-to-RGB and scaling to [-1, 1] are transforms applied
on access (`digit_transform`) or once, in bulk, by `decode_digits`, which caches its tensors.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from safetensors.torch import load_file, save_file

import hub_cards
from adapters.digit_sources import (
    DigitSourceError,
    canonical_split,
    check_parquet_files,
    load_parquet,
    read_course_layout,
    read_hf_folder,
    read_svhn_mat,
    read_usps_h5,
    standardise,
)
from adapters.folders import write_file_atomically


@dataclass(frozen=True)
class DigitDatasetInfo:
    hub_id: str
    hub_config: str | None
    embedded: str | None  # shipped folder (hub_cards.path) with a small class-balanced subset
    native_size: int
    native_channels: int


DIGIT_DATASETS = {
    "mnistm": DigitDatasetInfo("Mike0307/MNIST-M", None, "mnistm-mini", 32, 3),
    "svhn": DigitDatasetInfo("ufldl-stanford/svhn", "cropped_digits", None, 32, 3),
    "usps": DigitDatasetInfo("flwrlabs/usps", None, "usps-mini", 16, 1),
    "mnist": DigitDatasetInfo("ylecun/mnist", None, None, 28, 1),
}


class HubUnavailableError(ConnectionError):
    """The Hub could not be reached (offline, or HF_HUB_OFFLINE=1) and no local copy was given."""


def embedded_path(name: str) -> Path:
    """Folder of the small subset of `name` that ships with the repo."""
    info = _info(name)
    if info.embedded is None:
        raise DigitSourceError(
            f"no embedded copy of {name!r} ships with the repo (only "
            f"{sorted(k for k, v in DIGIT_DATASETS.items() if v.embedded)}); pass source=<path or Hub id>"
        )
    return hub_cards.path(info.embedded)


def _info(name: str) -> DigitDatasetInfo:
    if name not in DIGIT_DATASETS:
        raise ValueError(f"unknown digit dataset {name!r}; choose one of {sorted(DIGIT_DATASETS)}")
    return DIGIT_DATASETS[name]


def load_digits(name: str, source: str | os.PathLike | None = None, split: str = "train") -> datasets.Dataset:
    """Load one split of a digit dataset as a `datasets.Dataset` with columns image and label.

    Args:
        name: "mnistm", "svhn", "usps" or "mnist".
        source: None for the embedded subset (falls back to the Hub for datasets without one),
            "hub" for the dataset's Hub id, a Hub id "owner/name", or a local path: an HF dataset
            folder, the course layout root, an SVHN `.mat` file (or a folder holding
            `train_32x32.mat` / `test_32x32.mat`), or a USPS `.h5` file (or a folder holding `usps.h5`).
        split: "train", "validation" (alias "val") or "test".
    """
    info = _info(name)
    split = canonical_split(split)
    if source is None:
        if info.embedded is not None:
            return read_hf_folder(embedded_path(name), split)
        source = "hub"
    if source == "hub":
        return _load_from_hub(info.hub_id, info.hub_config, split, name)

    path = Path(source).expanduser()
    if path.exists():
        return _load_local(path, split)
    if _looks_like_hub_id(str(source)):
        return _load_from_hub(str(source), None, split, name)
    raise FileNotFoundError(f"digit source {str(source)!r} for {name!r} does not exist")


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~")) and "\\" not in source


def _load_local(path: Path, split: str) -> datasets.Dataset:
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".mat":
            return read_svhn_mat(path)
        if suffix in (".h5", ".hdf5"):
            return read_usps_h5(path, split)
        if suffix == ".parquet":
            check_parquet_files([path])
            return standardise(load_parquet(str(path), str(path), split="train"), str(path))
        raise DigitSourceError(f"{path}: unknown digit file format {suffix!r} (expected .mat, .h5 or .parquet)")

    if any(path.glob("*.csv")) and (path / "data").is_dir() and not any(path.glob("data/*.parquet")):
        return read_course_layout(path, split)
    svhn_file = path / f"{split}_32x32.mat"
    if svhn_file.exists():
        return read_svhn_mat(svhn_file)
    if any(path.glob("*_32x32.mat")):
        raise FileNotFoundError(f"{path}: no {svhn_file.name} for split {split!r}")
    if (path / "usps.h5").exists():
        return read_usps_h5(path / "usps.h5", split)
    has_hf_files = any(path.rglob("*.parquet")) or (path / "dataset_dict.json").exists()
    if has_hf_files or (path / "dataset_info.json").exists():
        return read_hf_folder(path, split)
    raise DigitSourceError(
        f"{path}: not a known digit source. Expected an HF dataset folder (parquet), the course layout "
        "(data/*.png + train.csv/val.csv), SVHN *_32x32.mat files or a USPS usps.h5 file."
    )


def _load_from_hub(hub_id: str, config: str | None, split: str, name: str) -> datasets.Dataset:
    # The Hub ids name their held-out split "test"; there is no "validation" split to guess at.
    try:
        loaded = datasets.load_dataset(hub_id, config, split=split)
    except ValueError as error:
        if "split" in str(error).lower() and "unknown" in str(error).lower():
            raise DigitSourceError(f"Hub dataset {hub_id!r} has no split {split!r} ({error})") from error
        raise
    except Exception as error:  # connection, offline mode, missing repo: all mean "use a local copy"
        raise HubUnavailableError(
            f"could not load {name!r} from the Hub id {hub_id!r} ({type(error).__name__}: {error}). "
            f"Offline? Point at a local copy instead: load_digits({name!r}, source=PATH) with PATH an HF "
            "parquet folder, the course layout root, SVHN *_32x32.mat files or a USPS usps.h5 file"
            + (" (or source=None for the small embedded subset)" if DIGIT_DATASETS[name].embedded else "")
            + "."
        ) from error
    return standardise(loaded, f"{hub_id} [{split}]")


def _to_rgb_array(image: Image.Image, image_size: int) -> np.ndarray:
    image = image.convert("RGB")
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def open_image(value, index: int) -> Image.Image:
    """Open one undecoded `datasets.Image` value ({"bytes", "path"}), naming the row if it is unreadable."""
    source = value.get("bytes") or value.get("path")
    if source is None:
        raise DigitSourceError(f"row {index}: the image is empty (no bytes and no path)")
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        name = value.get("path") or "<bytes>"
        raise DigitSourceError(f"row {index}: unreadable image {name} ({error})") from error
    return image


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1], the range the models are trained in."""
    return images.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Floats in `value_range` ((-1, 1): the models' range; (0, 1): displayed images) -> uint8 [0, 255].

    The project's one float-to-uint8 conversion. It rounds as torchvision's `save_image` does
    (x * 255 + 0.5, truncated), because the course's ground-truth PNGs were written that way and the DDIM
    command must reproduce them bit for bit; out-of-range values are clamped.
    """
    low, high = value_range
    if not high > low:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}")
    unit = images.float().sub(low).div(high - low)
    return unit.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)


# The largest image a command reads, a side: a digit needs 28 pixels, a course face 256. A larger one is refused
# from its header, before it is decoded, so a decompression bomb (a small PNG of gigapixels) costs nothing.
MAX_IMAGE_SIDE = 4096


def read_image_file(path: os.PathLike) -> Image.Image:
    """Open and fully read one image file; a file that is not a regular file, not a whole image or larger than
    MAX_IMAGE_SIDE a side is a ValueError that names it."""
    path = Path(path)
    if not path.is_file():
        if not path.exists():
            raise FileNotFoundError(f"image {path} does not exist")
        kind = "a folder" if path.is_dir() else "a FIFO, socket or device"
        raise ValueError(f"{path} is not a regular file ({kind}); an image is read from a file")
    try:
        with warnings.catch_warnings():
            # PIL only warns between 89 and 179 megapixels; any such image is refused below anyway
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if max(width, height) > MAX_IMAGE_SIDE:
                    raise ValueError(
                        f"{path} is {width}x{height} pixels; images are read up to {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}"
                    )
                image.load()
                return image.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"{path} is too large an image to decode ({error})") from None
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"unreadable image {path} ({error})") from error


def digit_pixel_values(images, image_size: int = 28) -> torch.Tensor:
    """PIL images of any size and mode -> float [N, 3, S, S] in [-1, 1], exactly as training sees them."""
    arrays = [_to_rgb_array(image, image_size) for image in images]
    return to_model_range(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))


def digit_transform(image_size: int = 28):
    """A `Dataset.with_transform` function: images -> pixel_values [3, S, S] float in [-1, 1]."""

    def transform(batch):
        return {"pixel_values": list(digit_pixel_values(batch["image"], image_size)), "label": batch["label"]}

    return transform


def _cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "guided-diffusion-da" / "digits"
    return Path(os.environ.get("DIGITS_CACHE_DIR", default))


def decode_digits(
    dataset: datasets.Dataset, image_size: int = 28, cache: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a whole split once into uint8 RGB images [N, 3, S, S] and int64 labels [N].

    Decoding 50,000 PNGs takes tens of seconds; the result is cached under DIGITS_CACHE_DIR
    (default ~/.cache/guided-diffusion-da/digits), keyed by the dataset's fingerprint and the size.
    """
    if len(dataset) == 0:
        raise DigitSourceError("cannot decode an empty dataset")
    key = hashlib.sha1(f"{dataset._fingerprint}-{image_size}".encode()).hexdigest()[:20]
    cache_file = _cache_dir() / f"{key}.safetensors"
    if cache and cache_file.exists():
        try:
            cached = load_file(str(cache_file))
            return cached["images"], cached["labels"]
        except Exception:  # noqa: BLE001 - any unreadable cache is simply rebuilt
            cache_file.unlink(missing_ok=True)  # a corrupt cache is rebuilt, never trusted

    images = np.empty((len(dataset), image_size, image_size, 3), dtype=np.uint8)
    labels = np.asarray(dataset["label"], dtype=np.int64)
    # Decode the bytes ourselves so that an unreadable image is reported with its row number.
    raw = dataset.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
    index = 0
    for batch in raw.iter(batch_size=1024):
        for value in batch["image"]:
            images[index] = _to_rgb_array(open_image(value, index), image_size)
            index += 1
    images_t = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    labels_t = torch.from_numpy(labels)
    if cache:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"images": images_t, "labels": labels_t}
        write_file_atomically(cache_file, lambda temporary: save_file(tensors, str(temporary)))
    return images_t, labels_t
