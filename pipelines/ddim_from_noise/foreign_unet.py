"""Run a noise-predicting network that is not a diffusers model inside the diffusers pipelines.

Many checkpoints come with their own model code: a plain ``torch.nn.Module`` whose
``forward(x, t)`` takes a batch of images and a batch of integer timesteps and returns the predicted
noise (for example the course's DDPM face UNet, built by its own ``UNet.py`` and loaded from
``UNet.pt``). The pipelines call ``unet(sample, t).sample`` and read ``unet.config.sample_size`` and
``unet.config.in_channels``; this adapter provides exactly that and nothing else.

    model = MyUNet()                                          # the network's own code
    model.load_state_dict(torch.load("UNet.pt", weights_only=True))
    unet = ForeignUNetAdapter(model, sample_size=256, in_channels=3)
    pipe = DDIMFromNoisePipeline(unet=unet, scheduler=ddim_scheduler("course"))

On the command line the same is `--pretrained UNet.pt --unet_code UNet.py:UNet` (`load_foreign_unet`): the code is
imported only because the user named it, and the weights are read with `weights_only=True`.
"""

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.configuration_utils import FrozenDict
from diffusers.utils import BaseOutput

from adapters.faces import read_tensor_file
from pipelines.model_folders import shape_misfit


@dataclass
class ForeignUNetOutput(BaseOutput):
    """Same field as diffusers' ``UNet2DOutput``: the predicted noise."""

    sample: torch.Tensor


class ForeignUNetAdapter(torch.nn.Module):
    """Wraps ``model(x, t) -> eps`` so that it can be called like a ``UNet2DModel``.

    Args:
        model: the noise-predicting network, ``forward(x, t)`` with ``x`` of shape [B, C, H, W] and
            ``t`` an int64 tensor of shape [B]; it returns a tensor of shape [B, C, H, W] (or a tuple,
            or an object with ``.sample``, whose first item is that tensor).
        sample_size: image height and width the model was trained on (int or (H, W)).
        in_channels: number of image channels.
    """

    def __init__(self, model: torch.nn.Module, sample_size: int | tuple[int, int], in_channels: int = 3):
        super().__init__()
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        self.model = model
        # The pipelines only read these keys; a FrozenDict gives them attribute access like diffusers.
        self.config = FrozenDict(sample_size=sample_size, in_channels=in_channels, out_channels=in_channels)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | int, return_dict: bool = True
    ) -> ForeignUNetOutput | tuple:
        # Models written for DDPM training take one integer timestep per image.
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.is_floating_point():
            raise ValueError(f"timestep must be an integer, got dtype {timestep.dtype}")
        if timestep.ndim == 0:
            timestep = timestep.expand(sample.shape[0])
        timesteps = timestep.to(torch.int64)

        eps = self.model(sample, timesteps)
        if isinstance(eps, (tuple, list)):
            eps = eps[0]
        elif hasattr(eps, "sample"):
            eps = eps.sample
        if not isinstance(eps, torch.Tensor) or eps.shape != sample.shape:
            shape = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
            raise ValueError(
                f"the wrapped model must return noise of the input's shape {tuple(sample.shape)}, got {shape}"
                " (a model that also predicts a variance must be sliced to its noise channels by the caller)"
            )
        return ForeignUNetOutput(sample=eps) if return_dict else (eps,)


def parse_code_spec(spec: str, option: str = "--unet_code") -> tuple[Path, str]:
    """`FILE.py:Class` as (path to the file, class name), checked without importing anything."""
    path_text, _, class_name = str(spec).rpartition(":")
    if not path_text or not class_name.isidentifier():
        raise ValueError(f"{option} {spec!r}: give the file and the class that defines the network, e.g. UNet.py:UNet")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{option} {spec}: {path} is not a file")
    if path.suffix != ".py":
        raise ValueError(f"{option} {spec}: {path} is not a Python file (.py)")
    return path, class_name


def load_state_dict_file(path: str | os.PathLike, option: str = "--pretrained") -> dict[str, torch.Tensor]:
    """A plain state dict (or `{"state_dict": ...}`) read with `torch.load(weights_only=True)`: no code runs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option} {path} is not a file")
    state = read_tensor_file(path, f"{option} {path}")
    if isinstance(state, dict) and set(state) == {"state_dict"}:
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{option} {path} holds a {type(state).__name__}, not a state dict (names -> tensors)")
    not_tensors = [str(key) for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{option} {path} is not a state dict: {not_tensors[0]!r} is not a tensor")
    return state


def build_foreign_model(spec: str, option: str = "--unet_code") -> torch.nn.Module:
    """Import FILE.py (only because the user named it) and build its class with its default arguments."""
    path, class_name = parse_code_spec(spec, option)
    module_name = f"_user_model_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(path.resolve().parent))  # the file may import its sibling modules, as in its own repo
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the user's own file: its failure is theirs to read, in one line
        raise ValueError(f"{option} {spec}: importing {path} failed: {type(error).__name__}: {error}") from error
    finally:
        sys.path.remove(str(path.resolve().parent))
    network_class = getattr(module, class_name, None)
    if not (isinstance(network_class, type) and issubclass(network_class, torch.nn.Module)):
        found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, torch.nn.Module))
        raise ValueError(
            f"{option} {spec}: {path} defines no torch.nn.Module named {class_name}"
            + (f" (it defines {', '.join(found)})" if found else "")
        )
    try:
        return network_class()
    except TypeError as error:
        raise ValueError(f"{option} {spec}: {class_name}() cannot be built with its defaults: {error}") from error


def load_foreign_unet(
    spec: str, weights: str | os.PathLike, sample_size: int | tuple[int, int], in_channels: int
) -> ForeignUNetAdapter:
    """The network of `spec` (`UNet.py:UNet`) with the state dict of `weights` (`UNet.pt`), as a UNet2DModel-like
    module. A state dict that does not fit the network is refused naming what differs."""
    state = load_state_dict_file(weights)
    model = build_foreign_model(spec)
    problems = shape_misfit(
        {key: tuple(value.shape) for key, value in model.state_dict().items()},
        {key: tuple(value.shape) for key, value in state.items()},
    )
    if problems:
        raise ValueError(f"--pretrained {weights} does not fit {spec}: " + "; ".join(problems))
    model.load_state_dict(state)
    return ForeignUNetAdapter(model.eval(), sample_size=sample_size, in_channels=in_channels)
