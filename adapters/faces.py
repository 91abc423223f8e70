"""Face inputs for DDIM: the course's noise and ground-truth folders, and the LFW face crops.

The course ships ``face/noise/NN.pt`` (each a float32 tensor [1, 3, 256, 256]) and
``face/GT/NN.png`` (the images its reference sampler makes from them). These helpers read and
write folders in that layout with the checks a grader would want: a file that is missing, of the
wrong shape or dtype, not finite, or not a tensor is an error that names the file.
"""

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from adapters.digit_sources import check_parquet_files, load_parquet
from adapters.digits import read_image_file
from adapters.folders import write_file_atomically

PathLike = str | os.PathLike

_NOISE_NAME = re.compile(r"^\d+\.pt$")

# Initial noise is standard normal: a value beyond 100 sigma has probability ~1e-2174 and never occurs. Larger
# magnitudes mean the file holds something else (an image in 0-255, a scaled or corrupt tensor); near 1e19 the
# DDIM update overflows float32 and the image comes out black, so such noise is refused up front.
MAX_NOISE_MAGNITUDE = 100.0


def _default_lfw_path() -> Path:
    shared = os.environ.get("SHARED_DATA", str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    return Path(shared) / "lfw_faces"


def _existing_dir(folder: PathLike, what: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder {folder} does not exist")
    return folder


def check_noise(noise, name: str, shape: Sequence[int] | None = None) -> torch.Tensor:
    """Checks one initial noise and returns it as [C, H, W] (a leading batch dimension of 1 is dropped).

    Args:
        noise: the loaded object.
        name: the file or item name, for the error message.
        shape: the expected [C, H, W], or None to accept any.
    """
    if not isinstance(noise, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(noise).__name__}")
    if not noise.is_floating_point():
        raise ValueError(f"{name}: expected a floating point tensor (the course uses float32), got {noise.dtype}")
    if noise.ndim == 4 and noise.shape[0] == 1:
        noise = noise[0]
    if noise.ndim != 3:
        raise ValueError(f"{name}: expected shape [1, C, H, W] or [C, H, W], got {tuple(noise.shape)}")
    if shape is not None and tuple(noise.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} (or with a leading 1), got {tuple(noise.shape)}")
    if not torch.isfinite(noise).all():
        raise ValueError(f"{name}: contains NaN or infinite values; initial noise must be standard normal")
    magnitude = float(noise.abs().max())
    if magnitude > MAX_NOISE_MAGNITUDE:
        raise ValueError(
            f"{name}: values reach {magnitude:.3g} in magnitude, but initial noise is standard normal (|x| <= "
            f"{MAX_NOISE_MAGNITUDE:g}); write fresh noise with `python -m pipelines.ddim_from_noise noise`"
        )
    return noise


def load_face_noises(folder: PathLike, shape: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """Reads every ``NN.pt`` of a folder (sorted by name) as {"NN": tensor [C, H, W]}.

    All noises must have one shape (``shape`` if given). Files are loaded with
    ``torch.load(weights_only=True)``, so a pickle that is not plain tensors is refused.
    """
    folder = _existing_dir(folder, "noise")
    files = sorted((p for p in folder.iterdir() if _NOISE_NAME.match(p.name)), key=lambda p: p.name)
    if not files:
        raise FileNotFoundError(f"no NN.pt noise files in {folder}")
    irregular = [path.name for path in files if not path.is_file()]
    if irregular:  # reading a FIFO would wait forever, a folder cannot be read
        raise ValueError(f"{folder}: not a regular file: {', '.join(irregular)}; noises are read from NN.pt files")
    noises = {}
    for path in files:
        noise = check_noise(read_tensor_file(path, str(path)), str(path), shape)
        shape = tuple(noise.shape)
        noises[path.stem] = noise
    return noises


def read_tensor_file(path: PathLike, name: str) -> object:
    """`torch.load(path, weights_only=True)`: plain tensors (and containers of them) only, so a crafted pickle
    never runs. Any failure is a one-line ValueError that starts with `name`."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it reads; the answer is all we need
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or EOFError by case
        # not torch's own text: it suggests weights_only=False, which would run the file's code
        raise ValueError(
            f"{name}: refused ({type(error).__name__}): torch.load(weights_only=True) reads plain tensors only, "
            "and this file holds other pickled objects or is not a torch.save file"
        ) from error


def save_face_noises(
    folder: PathLike, num_noises: int = 10, shape: Sequence[int] = (3, 256, 256), seed: int = 0
) -> dict[str, torch.Tensor]:
    """Writes ``00.pt`` .. in the course's format: float32 standard normal tensors [1, C, H, W].

    The noises come from one ``torch.Generator`` seeded with ``seed``, in file order, so a seed
    always gives the same files. Each file is written under a temporary name and then renamed.
    """
    if num_noises < 1:
        raise ValueError(f"num_noises must be positive, got {num_noises}")
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be [C, H, W] with positive sizes, got {tuple(shape)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    width = max(2, len(str(num_noises - 1)))
    noises = {}
    for i in range(num_noises):
        name = f"{i:0{width}d}"
        noise = torch.randn((1, *shape), generator=generator, dtype=torch.float32)
        write_file_atomically(folder / f"{name}.pt", lambda temporary, noise=noise: torch.save(noise, temporary))
        noises[name] = noise[0]
    return noises


def read_face_image(path: PathLike) -> np.ndarray:
    """A PNG as uint8 [H, W, 3]; grey images are repeated over 3 channels (that keeps their MSE)."""
    image = read_image_file(path)  # whole, of a sane size, a regular file: else a ValueError naming it
    if image.mode not in ("L", "RGB"):
        raise ValueError(f"{path}: expected a grey (L) or RGB image, got mode {image.mode}")
    return np.asarray(image.convert("RGB"))


def load_face_images(folder: PathLike) -> dict[str, np.ndarray]:
    """Reads every ``*.png`` of a folder (sorted by name) as {"NN": uint8 [H, W, 3]}."""
    folder = _existing_dir(folder, "image")
    files = sorted(folder.glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no .png images in {folder}")
    return {path.stem: read_face_image(path) for path in files}


def face_mse(pred_dir: PathLike, gt_dir: PathLike) -> dict[str, float]:
    """MSE on the 0-255 scale, in float64, of each ground-truth image and the prediction of the same name.

    Every image of ``gt_dir`` needs a prediction of the same file name in ``pred_dir`` and the same size.
    """
    gt = load_face_images(gt_dir)
    pred_dir = _existing_dir(pred_dir, "prediction")
    scores = {}
    for name, target in gt.items():
        path = pred_dir / f"{name}.png"
        if not path.exists():
            raise FileNotFoundError(f"prediction {path} is missing (ground truth {name}.png exists)")
        pred = read_face_image(path)
        if pred.shape != target.shape:
            raise ValueError(
                f"{name}.png: prediction is {pred.shape[1]}x{pred.shape[0]}, ground truth "
                f"{target.shape[1]}x{target.shape[0]}"
            )
        # float64: uint8 subtraction would wrap around
        scores[name] = float(np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2))
    return scores


def load_lfw_faces(source: PathLike | None = None):
    """The LFW face crops (100 grey 25x25 images, column ``image``) as a ``datasets.Dataset``.

    ``source`` is a parquet file or a folder holding ``train.parquet``; by default the shared data
    folder (``$SHARED_DATA/lfw_faces``).
    """
    import datasets

    path = Path(source) if source is not None else _default_lfw_path()
    if path.is_dir():
        path = path / "train.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"LFW faces parquet file {path} does not exist")
    check_parquet_files([path])
    dataset = load_parquet(str(path), str(path), split="train")
    if "image" not in dataset.column_names:
        raise ValueError(f"{path} has no 'image' column (columns: {dataset.column_names})")
    return dataset.cast_column("image", datasets.Image())
