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
"""

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import FrozenDict
from diffusers.utils import BaseOutput


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
