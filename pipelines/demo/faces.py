"""DDIM from given noises for the demo: the face model's course-format noises or uploaded `NN.pt` files, eta,
slerp / lerp between two noises, and the eta grid.

Uploaded files are read with `torch.load(weights_only=True)` (a pickle of anything but tensors is refused) and
checked by `adapters.faces.check_noise` against the model's [C, H, W], the checks of the command line.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import PIL.Image
import torch

from adapters.faces import check_noise, read_tensor_file
from pipelines.ddim_from_noise.figures import ETAS, save_grid
from pipelines.ddim_from_noise.interpolation import lerp, slerp
from pipelines.ddim_from_noise.pipeline_ddim_from_noise import DDIMFromNoisePipeline
from pipelines.demo.digits import Progress, whole_number
from pipelines.demo.models import DemoModels
from pipelines.seeds import step_noise_generator

INTERPOLATIONS = {"slerp": slerp, "lerp": lerp}
MAX_UPLOADED_NOISES = 10
GRID_COLUMNS = 4  # the eta grid of the report: eta 0.0 ... 0.9 (rows) x the first four noises


def read_uploaded_noises(paths: Sequence[str | Path], shape: Sequence[int]) -> dict[str, torch.Tensor]:
    """{"NN": [C, H, W]} from uploaded `.pt` files, named by file stem; any bad file is an error naming it."""
    if len(paths) > MAX_UPLOADED_NOISES:
        raise ValueError(f"upload at most {MAX_UPLOADED_NOISES} noise files, got {len(paths)}")
    noises = {}
    for path in map(Path, paths):
        if path.suffix != ".pt":
            raise ValueError(f"{path.name}: expected a .pt noise file (a tensor saved by torch.save)")
        loaded = read_tensor_file(path, path.name)
        if path.stem in noises:
            raise ValueError(f"two uploaded files are named {path.name}")
        noises[path.stem] = check_noise(loaded, path.name, shape)
    return noises


def noise_set(models: DemoModels, uploaded: Sequence[str | Path] | None) -> dict[str, torch.Tensor]:
    """The uploaded noises when there are any, else the course-format noises shipped with the face model."""
    if uploaded:
        return read_uploaded_noises(uploaded, models.face_noise_shape())
    return models.face_noises


def _pick(noises: dict[str, torch.Tensor], name: str, which: str) -> torch.Tensor:
    if name not in noises:
        raise ValueError(f"{which} {name!r} is not among the noises: {sorted(noises)}")
    return noises[name]


def _check_eta_steps(eta, steps) -> tuple[float, int]:
    steps = whole_number(steps, "steps (num_inference_steps)")  # the page sends floats such as 50.0
    DDIMFromNoisePipeline.check_call_arguments(eta=eta, num_inference_steps=steps)
    return float(eta), steps


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def ddim_pair(
    models: DemoModels,
    noises: dict[str, torch.Tensor],
    name_a: str,
    name_b: str,
    eta: float,
    steps: int,
    seed: int,
    alpha: float,
    interpolation: str,
) -> list[tuple[PIL.Image.Image, str]]:
    """Noise A, the `interpolation` of A and B at `alpha`, and noise B, each denoised with DDIM at `eta`.

    Every image is drawn with its own generator seeded by `seed`, so an image does not depend on the others.
    The captions give the norm of each starting noise: slerp keeps it, lerp shrinks it towards alpha = 0.5.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
    eta, steps = _check_eta_steps(eta, steps)
    alpha = _check_alpha(alpha)
    seed = whole_number(seed, "seed")
    noise_a, noise_b = _pick(noises, name_a, "noise A"), _pick(noises, name_b, "noise B")
    mixed = INTERPOLATIONS[interpolation](noise_a, noise_b, alpha)
    pipe = models.face_pipeline()
    batch = torch.stack([noise_a, mixed, noise_b])
    generators = [step_noise_generator(seed) for _ in range(len(batch))]
    images = pipe(batch, eta=eta, num_inference_steps=steps, generator=generators).images
    labels = [f"{name_a}.pt", f"{interpolation} alpha = {alpha:g}", f"{name_b}.pt"]
    return [
        (image, f"{label}, |x_T| = {float(noise.norm()):.1f}")
        for image, label, noise in zip(images, labels, batch, strict=True)
    ]


def eta_grid(
    models: DemoModels,
    noises: dict[str, torch.Tensor],
    steps: int,
    seed: int,
    progress: Progress | None = None,
) -> Iterator[PIL.Image.Image]:
    """The report's eta grid (eta 0.0 ... 0.9 as rows, the first four noises as columns), a row at a time.

    Each yield is the labelled figure of the rows so far; every row uses generator seed `seed`, as
    `python -m pipelines.ddim_from_noise.figures` does, so rows differ only in eta.
    """
    _, steps = _check_eta_steps(0.0, steps)
    seed = whole_number(seed, "seed")
    names = sorted(noises)[:GRID_COLUMNS]
    batch = torch.stack([noises[name] for name in names])
    pipe = models.face_pipeline()
    rows = []
    for i, eta in enumerate(ETAS):
        if progress is not None:
            progress(i, len(ETAS), f"eta = {eta}")
        generator = step_noise_generator(seed)
        rows.append(pipe(batch, eta=eta, num_inference_steps=steps, generator=generator).images)
        yield grid_figure(rows, names, steps)


def grid_figure(rows: list[list[PIL.Image.Image]], names: list[str], steps: int) -> PIL.Image.Image:
    """The rows drawn with their eta and noise labels by the figures command's own `save_grid`."""
    buffer = io.BytesIO()
    save_grid(
        rows,
        [f"eta = {eta}" for eta in ETAS[: len(rows)]],
        [f"{name}.pt" for name in names],
        "initial noise",
        "eta",
        f"DDIM, eta from 0.0 to {ETAS[len(rows) - 1]}, {steps} steps",
        buffer,
    )
    buffer.seek(0)
    with PIL.Image.open(buffer) as figure:
        return figure.convert("RGB")
