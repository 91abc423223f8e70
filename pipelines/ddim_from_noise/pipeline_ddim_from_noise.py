"""DDIM sampling (Song et al. 2021) that starts from initial noises the caller gives.

Unlike diffusers' ``DDIMPipeline``, which draws fresh noise, this pipeline denoises exactly the
tensors it is handed (for example the course's ``00.pt`` .. ``09.pt``), so that two implementations
can be compared image by image. The update is eq. (12) of the DDIM paper, computed by diffusers'
``DDIMScheduler``:

    x_{t-1} = sqrt(a_{t-1}) * x0_hat + sqrt(1 - a_{t-1} - sigma_t^2) * eps + sigma_t * z
    x0_hat  = (x_t - sqrt(1 - a_t) * eps) / sqrt(a_t)
    sigma_t = eta * sqrt((1 - a_{t-1}) / (1 - a_t)) * sqrt(1 - a_t / a_{t-1})

| code                                  | paper                   |
|---------------------------------------|-------------------------|
| ``latents``                           | x_t                     |
| ``alphas_cumprod[t]``                 | alpha_t (cumulative)    |
| ``noise_pred``                        | eps_theta(x_t, t)       |
| ``eta``                               | eta (0: DDIM, 1: DDPM)  |

Two presets fix the conventions that differ between implementations (T = 1000 linear betas
1e-4 -> 0.02 in both):

- ``course``: betas in float64, timesteps 980, 960, ..., 0, final alpha-bar 1, x0 not clipped,
  every image min-max normalised to [0, 1] (``torchvision.utils.save_image(normalize=True)``).
- ``diffusers``: diffusers' defaults for DDPM checkpoints: timesteps 981, ..., 1
  (``timestep_spacing="leading"``, ``steps_offset=1``), final alpha-bar = alpha-bar_0, x0 clipped
  to [-1, 1], images mapped by (x + 1) / 2 and clamped.

``save_pretrained`` stores the scheduler config, the normalisation and whether the betas are float64 (which no
scheduler config can say); ``from_pretrained`` without a preset restores all three, so a round trip gives
identical images.

Sharing. ``save_pretrained`` also writes this file into the folder and names it in model_index.json as
``[module, class]``, so that with only diffusers installed
``DiffusionPipeline.from_pretrained(folder_or_repo_id, trust_remote_code=True)`` runs this same code (its
``__init__`` applies the stored settings). Hence this file imports nothing from the project.
``DDIMFromNoisePipeline.from_pretrained`` reads that entry as this class (the installed one), so it needs no
``trust_remote_code``; otherwise it is diffusers' own, with ``preset`` on top.
"""

import inspect
import json
import numbers
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import deprecate
from diffusers.utils.torch_utils import randn_tensor

# The same bound as adapters.faces.MAX_NOISE_MAGNITUDE, repeated because this file ships alone to the Hub: a standard
# normal value beyond 100 sigma never occurs, so larger values are an image or a corrupt tensor (and ~1e19 overflows
# float32 into black images).
MAX_NOISE_MAGNITUDE = 100.0

NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02
OUTPUT_TYPES = ("pil", "np", "pt", "latent")
# from_pretrained's arguments that say where and how to find a folder, which reading model_index.json needs too
HUB_KWARGS = ("revision", "cache_dir", "local_files_only", "token", "proxies", "force_download")


@dataclass(frozen=True)
class DDIMPreset:
    scheduler_config: dict
    image_normalization: str  # "minmax" (each image to [0, 1]) or "clamp" ((x + 1) / 2, clamped)
    float64_betas: bool


PRESETS = {
    "course": DDIMPreset(
        scheduler_config=dict(timestep_spacing="leading", steps_offset=0, set_alpha_to_one=True, clip_sample=False),
        image_normalization="minmax",
        float64_betas=True,
    ),
    "diffusers": DDIMPreset(
        scheduler_config=dict(timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, clip_sample=True),
        image_normalization="clamp",
        float64_betas=False,
    ),
}


def ddim_scheduler(preset: str = "course") -> DDIMScheduler:
    """The ``DDIMScheduler`` of a preset (T = 1000, linear betas 1e-4 -> 0.02)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    scheduler = DDIMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule="linear",
        prediction_type="epsilon",
        **PRESETS[preset].scheduler_config,
    )
    if PRESETS[preset].float64_betas:
        use_float64_betas(scheduler)
    return scheduler


def use_float64_betas(scheduler: DDIMScheduler) -> DDIMScheduler:
    """Rebuild the scheduler's linear beta table in float64, as the course's reference does.

    diffusers builds the betas in float32. The scheduler indexes this table only, so replacing it changes
    nothing else. The config cannot express the dtype, so the pipeline records it as ``float64_betas``.
    """
    config = scheduler.config
    if config.beta_schedule != "linear":
        raise ValueError(f"float64 betas are defined for the linear schedule only, got {config.beta_schedule!r}")
    betas = torch.linspace(config.beta_start, config.beta_end, config.num_train_timesteps, dtype=torch.float64)
    scheduler.betas = betas
    scheduler.alphas = 1.0 - betas
    scheduler.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return scheduler


def normalize_images(images: torch.Tensor, mode: str) -> torch.Tensor:
    """Maps a batch [B, C, H, W] of model outputs to [0, 1] in float32."""
    images = images.float()
    if mode == "clamp":
        return (images / 2 + 0.5).clamp(0, 1)
    if mode == "minmax":
        # Same arithmetic as torchvision.utils.save_image(x, normalize=True) on one image.
        low = images.amin(dim=(1, 2, 3), keepdim=True)
        high = images.amax(dim=(1, 2, 3), keepdim=True)
        return (images - low) / (high - low).clamp(min=1e-5)
    raise ValueError(f"unknown image normalization {mode!r}; choose 'minmax' or 'clamp'")


class DDIMFromNoisePipeline(DiffusionPipeline):
    r"""DDIM sampling from given initial noises.

    Args:
        unet ([`UNet2DModel`]):
            An unconditional UNet, or any module with the same call signature (see `ForeignUNetAdapter`).
        scheduler ([`DDIMScheduler`]):
            `ddim_scheduler(preset)` builds the presets' ones.
        image_normalization (`str`, *optional*, defaults to `"minmax"`):
            `"minmax"` or `"clamp"`, how outputs are mapped to [0, 1].
        float64_betas (`bool`, *optional*):
            Whether the scheduler's beta table is float64 (the `course` preset). None reads it off the scheduler.
            Stored in `model_index.json`, since the scheduler config cannot hold it, so that a saved pipeline loads
            back with the same numbers.
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents", "noise_pred"]

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: DDIMScheduler,
        image_normalization: str = "minmax",
        float64_betas: bool | None = None,
    ):
        super().__init__()
        if not isinstance(scheduler, DDIMScheduler):
            raise ValueError(f"scheduler must be a DDIMScheduler, got {type(scheduler).__name__}")
        _refuse_conditional_unet(unet)
        normalize_images(torch.zeros(1, 1, 1, 1), image_normalization)  # fail early on a bad name
        if float64_betas is None:
            float64_betas = scheduler.alphas_cumprod.dtype == torch.float64
        elif float64_betas:
            use_float64_betas(scheduler)
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(image_normalization=image_normalization, float64_betas=bool(float64_betas))

    @classmethod
    def from_unet(cls, unet: torch.nn.Module, preset: str = "course") -> "DDIMFromNoisePipeline":
        """Pairs a UNet (or ``ForeignUNetAdapter``) with the scheduler and output mapping of a preset."""
        return cls(unet=unet, **_preset_settings(preset))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> "DDIMFromNoisePipeline":
        """diffusers' `from_pretrained`, with a `preset` on top, that also takes the UNet of a folder of another kind.

        - a saved ``DDIMFromNoisePipeline``: diffusers' own loading (dtype and dtype dicts, device_map, variant,
          use_safetensors, local_files_only, ... as for any pipeline), which restores the stored scheduler,
          normalisation and beta dtype, so that save and load give identical images;
        - any other folder or Hub id with a ``UNet2DModel`` (in ``unet/`` or at the top: a bare UNet, a
          ``DDPMPipeline``): its UNet, loaded with the same keyword arguments, and the ``course`` preset.

        ``preset="course"`` or ``"diffusers"`` replaces the scheduler and output mapping by the preset's, whatever
        the folder stores (the caller's explicit choice). A stored training schedule that differs from the presets'
        then gives a warning, since such a model would produce noise under them.
        """
        preset = kwargs.pop("preset", None)
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        path = str(pretrained_model_name_or_path)
        hub_kwargs = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
        saved_here = _stored_pipeline_config(cls.__name__, path, hub_kwargs) is not None
        if preset is None and saved_here:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if saved_here:
            if "scheduler" in kwargs:
                raise ValueError("give preset or scheduler, not both: the preset sets the scheduler")
            _check_training_schedule(path, hub_kwargs)
            settings = _preset_settings(preset)
            return super().from_pretrained(pretrained_model_name_or_path, **settings, **kwargs)
        replaced = sorted(name for name in ("unet", "scheduler") if name in kwargs)
        if replaced:
            raise ValueError(
                f"{path} is not a saved {cls.__name__}: there is no pipeline whose {replaced} to replace; "
                f"use {cls.__name__}.from_unet(unet, preset) with your own UNet"
            )
        dtype = _dtype_argument(kwargs)
        if isinstance(dtype, dict):  # diffusers' per-component form
            dtype = dtype.get("unet", dtype.get("default"))
        if dtype is not None:
            kwargs["dtype"] = dtype
        unet = _load_unet(path, kwargs)
        _refuse_conditional_unet(unet, path)  # before the schedule warning: the clearer of the two problems
        _check_training_schedule(path, hub_kwargs)
        return cls.from_unet(unet, preset or "course")

    # Copied from pipelines.conditional_ddpm.pipeline_conditional_ddpm.ConditionalDDPMPipeline._dict_from_json_file
    @classmethod
    def _dict_from_json_file(cls, json_file: str | os.PathLike) -> dict:
        """A config file as diffusers reads it, except that `model_index.json`'s `_class_name` naming this file and
        class (`[module, class]`, what `save_config` writes) reads as this class.

        diffusers' `from_pretrained` imports a folder's own copy of the pipeline's file whenever `_class_name` names
        one, and asks for `trust_remote_code` to do so. Called on this class, the copy is the code already imported,
        so the folder loads with it; everything else `from_pretrained` does stays diffusers' own.
        """
        config = super()._dict_from_json_file(json_file)
        own_code = [Path(inspect.getsourcefile(cls)).stem, cls.__name__]
        if isinstance(config, dict) and config.get("_class_name") == own_code:
            config["_class_name"] = cls.__name__
        return config

    # Copied from pipelines.conditional_ddpm.pipeline_conditional_ddpm.ConditionalDDPMPipeline.save_config
    def save_config(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """model_index.json naming this file as `[module, class]`, and this file beside it.

        `save_pretrained` writes the config after the components and before any push, so every saved or pushed
        folder carries its code.
        """
        if kwargs.get("push_to_hub"):
            raise ValueError("push with save_pretrained(..., push_to_hub=True), which saves this file first")
        super().save_config(save_directory, **kwargs)
        source = Path(inspect.getsourcefile(type(self)))  # also right for a copy loaded with trust_remote_code
        shutil.copyfile(source, Path(save_directory) / source.name)
        index_file = Path(save_directory) / self.config_name
        index = json.loads(index_file.read_text())
        index["_class_name"] = [source.stem, type(self).__name__]
        index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    @property
    def num_timesteps(self) -> int:
        """The number of denoising steps of the call in progress (or the last call)."""
        return self._num_timesteps

    # Copied from pipelines.conditional_ddpm.pipeline_conditional_ddpm.ConditionalDDPMPipeline.prepare_latents
    def prepare_latents(self, shape, dtype, device, generator, latents=None) -> torch.Tensor:
        """x_T: `latents` when given, else drawn from `generator` as diffusers' pipelines draw it (`randn_tensor`,
        one image per generator of a list).

        Given `latents`, a generator still gives up the draw that x_T would have taken, so the steps' noise that
        follows is the stream of a diffusers pipeline that drew x_T itself. Passing the generator that made
        `latents`, or one seeded alike, then gives fresh step noise rather than x_T again.
        """
        if latents is None or generator is not None:
            drawn = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
            if latents is None:
                return drawn
        return latents.to(device=device, dtype=dtype)

    def check_inputs(
        self,
        noise,
        eta,
        num_inference_steps,
        output_type="pil",
        generator=None,
        callback_on_step_end_tensor_inputs=None,
    ) -> None:
        """Raise a ValueError naming the argument for any input ``__call__`` cannot honour, before any work."""
        tensors = _noise_list(noise)
        if not tensors:
            raise ValueError("noise is empty: give a tensor or a non-empty list of tensors")
        size = self.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        expected = (self.unet.config.in_channels, height, width)
        count = 0
        for i, x in enumerate(tensors):
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"noise {i} must be a torch.Tensor, got {type(x).__name__}")
            if not x.is_floating_point():
                raise ValueError(f"noise {i} must be a floating point tensor, got dtype {x.dtype}")
            shape = tuple(x.shape)
            if len(shape) not in (3, 4) or shape[-3:] != expected:
                raise ValueError(
                    f"noise {i} has shape {shape}; the UNet expects [C, H, W] or [N, C, H, W] with C, H, W = {expected}"
                )
            if not torch.isfinite(x).all():
                raise ValueError(f"noise {i} contains NaN or infinite values; initial noise is standard normal")
            magnitude = float(x.abs().max())
            if magnitude > MAX_NOISE_MAGNITUDE:  # see adapters.faces: not noise, and black images
                raise ValueError(
                    f"noise {i} reaches {magnitude:.3g} in magnitude; initial noise is standard normal "
                    f"(|x| <= {MAX_NOISE_MAGNITUDE:g})"
                )
            count += 1 if len(shape) == 3 else shape[0]
        _check_eta(eta)
        _check_inference_steps(num_inference_steps, self.scheduler.config.num_train_timesteps)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(map(repr, OUTPUT_TYPES))}, got {output_type!r}")
        if isinstance(generator, list) and len(generator) != count:
            raise ValueError(f"got {len(generator)} generators for {count} noises")
        unknown = [k for k in callback_on_step_end_tensor_inputs or () if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs {unknown} are not tensors of this pipeline; "
                f"choose from {self._callback_tensor_inputs}"
            )

    @classmethod
    def check_call_arguments(
        cls,
        pretrained_model_name_or_path: str | os.PathLike | None = None,
        eta: float = 0.0,
        num_inference_steps: int = 50,
        preset: str | None = None,
        spelling: dict[str, str] | None = None,
        **hub_kwargs,
    ) -> None:
        r"""The rules of `__call__` on eta and steps, checked before any weight loads.

        The same rules (and messages) as `check_inputs`. The most steps are the trained steps of the scheduler a
        saved pipeline folder stores, or the presets' 1000 (a bare UNet, an explicit `preset`, no folder). The
        commands and the demo call it on their inputs.

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`, *optional*):
                The folder or Hub id `from_pretrained` will load; None for the presets' schedule.
            eta, num_inference_steps:
                As in `__call__`.
            preset (`str`, *optional*):
                As in `from_pretrained`: a preset replaces the stored scheduler.
            spelling (`dict[str, str]`, *optional*):
                How the caller names the arguments in messages, e.g. `{"eta": "--eta"}`.
            hub_kwargs:
                `revision`, `local_files_only`, ... as for `from_pretrained`.
        """
        _check_eta(eta, spelling)
        trained_steps = NUM_TRAIN_TIMESTEPS
        path = None if pretrained_model_name_or_path is None else str(pretrained_model_name_or_path)
        if preset is None and path is not None and _stored_pipeline_config(cls.__name__, path, hub_kwargs):
            stored = DDIMScheduler.load_config(path, subfolder="scheduler", **hub_kwargs)
            trained_steps = stored.get("num_train_timesteps", NUM_TRAIN_TIMESTEPS)
        _check_inference_steps(num_inference_steps, trained_steps, spelling)

    @torch.no_grad()
    def __call__(
        self,
        noise: torch.Tensor | list[torch.Tensor],
        eta: float = 0.0,
        num_inference_steps: int = 50,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> ImagePipelineOutput | tuple:
        r"""Denoises the given initial noises x_T.

        Args:
            noise (`torch.Tensor` or `list[torch.Tensor]`):
                One tensor [C, H, W] or [N, C, H, W], or a list of them (concatenated in order); standard normal
                values (NaN, infinities and magnitudes above 100 are refused). diffusers' pipelines call it `latents`.
            eta (`float`, *optional*, defaults to 0.0):
                0 gives deterministic DDIM, 1 the DDPM posterior variance; in [0, 1].
            num_inference_steps (`int`, *optional*, defaults to 50):
                Number of DDIM steps (50 gives timesteps 980, 960, ..., 0 in ``course``).
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*):
                One generator, or one per image, consumed as diffusers' `DDIMPipeline` consumes it: first the draw
                of x_T (set aside, since `noise` is x_T), then the noise z of every step when eta > 0. The
                generator that made `noise`, or one seeded alike, thus gives `DDIMPipeline`'s images.
            output_type (`str`, *optional*, defaults to `"pil"`):
                ``"pil"`` (list of PIL images), ``"np"`` ([N, H, W, C] in [0, 1]), ``"pt"`` ([N, C, H, W] in [0, 1])
                or ``"latent"`` (x_0 as the model made it, before the preset's mapping to [0, 1], on the device).
            return_dict (`bool`, *optional*, defaults to `True`):
                Return an [`ImagePipelineOutput`] rather than a tuple.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*):
                `fn(pipe, step_index, timestep, callback_kwargs)` called after each scheduler step; `callback_kwargs`
                holds the tensors named in `callback_on_step_end_tensor_inputs` (`latents` is then x_{t-1}), and a
                returned `{"latents": ...}` replaces them.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*, defaults to `["latents"]`):
                Which of `_callback_tensor_inputs` (`latents`, `noise_pred`: eps_theta(x_t, t)) the callback
                receives.

        Examples:

        ```py
        >>> import torch
        >>> from pipelines import DDIMFromNoisePipeline

        >>> pipe = DDIMFromNoisePipeline.from_pretrained("hub_cards/ddpm-lfw-faces", preset="course")
        >>> pipe.set_progress_bar_config(disable=True)
        >>> noise = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))  # two grey 32x32 faces
        >>> images = pipe(noise, eta=0.0, num_inference_steps=10).images
        >>> [(image.mode, image.size) for image in images]
        [('L', (32, 32)), ('L', (32, 32))]
        ```

        Returns:
            [`ImagePipelineOutput`] or `tuple`: the images, as ``(images,)`` when `return_dict` is False.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        self.check_inputs(noise, eta, num_inference_steps, output_type, generator, callback_on_step_end_tensor_inputs)
        batch = torch.cat([x if x.ndim == 4 else x.unsqueeze(0) for x in _noise_list(noise)])
        latents = self.prepare_latents(batch.shape, self.unet.dtype, self._execution_device, generator, batch)

        # timesteps stay on the CPU, like the scheduler's alpha table they index (as in DDIMPipeline)
        self.scheduler.set_timesteps(int(num_inference_steps))
        self._num_timesteps = len(self.scheduler.timesteps)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            # 1. predict the noise eps_theta(x_t, t)
            noise_pred = self.unet(latents, t).sample
            # 2. x_{t-1} from eq. (12); z is drawn by `generator` when eta > 0
            latents = self.scheduler.step(noise_pred, t, latents, eta=eta, generator=generator).prev_sample
            # 3. diffusers' step-end hook
            if callback_on_step_end is not None:
                tensors = {"latents": latents, "noise_pred": noise_pred}
                callback_kwargs = {name: tensors[name] for name in callback_on_step_end_tensor_inputs}
                outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                latents = outputs.pop("latents", latents)

        # 4. map to [0, 1] as the preset says
        if output_type == "latent":
            images = latents
        else:
            image = normalize_images(latents, self.config.image_normalization)
            if output_type == "pt":
                images = image.cpu()
            elif output_type == "np":
                images = image.cpu().permute(0, 2, 3, 1).numpy()
            else:
                images = [_to_pil(x) for x in _unit_to_uint8(image).cpu()]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

    @property
    def preset_name(self) -> str:
        """The preset whose scheduler, normalisation and beta dtype this pipeline has, or ``"custom"``."""
        for name, preset in PRESETS.items():
            same_scheduler = all(self.scheduler.config.get(k) == v for k, v in preset.scheduler_config.items())
            if (
                same_scheduler
                and self.config.image_normalization == preset.image_normalization
                and self.config.float64_betas == preset.float64_betas
            ):
                return name
        return "custom"


def _spelled(name: str, spelling: dict[str, str] | None) -> str:
    """An argument's name as the caller spells it (a command's `--eta`), for messages."""
    return (spelling or {}).get(name, name)


def _check_eta(eta, spelling: dict[str, str] | None = None) -> None:
    """eta in [0, 1]: 0 is DDIM, 1 the DDPM posterior variance (nan is refused too)."""
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not (0.0 <= eta <= 1.0):
        raise ValueError(f"{_spelled('eta', spelling)} must be a number in [0, 1], got {eta!r}")


def _check_inference_steps(num_inference_steps, trained_steps: int, spelling: dict[str, str] | None = None) -> None:
    """An int from 1 to the trained steps."""
    steps = num_inference_steps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= trained_steps:
        name = _spelled("num_inference_steps", spelling)
        raise ValueError(f"{name} must be an int in [1, {trained_steps}], got {num_inference_steps!r}")


def _dtype_argument(kwargs: dict):
    """`dtype` popped from `from_pretrained`'s kwargs, or its deprecated name `torch_dtype` with diffusers' own
    deprecation; both at once is an error, as in `DiffusionPipeline.from_pretrained`."""
    torch_dtype, dtype = kwargs.pop("torch_dtype", None), kwargs.pop("dtype", None)
    if torch_dtype is None:
        return dtype
    if dtype is not None:
        raise ValueError("give dtype or torch_dtype (diffusers' deprecated name of dtype), not both")
    deprecate("torch_dtype", "1.0.0", "Please use `dtype` instead.")
    return torch_dtype


def _noise_list(noise) -> list:
    return list(noise) if isinstance(noise, (list, tuple)) else [noise]


def _preset_settings(preset: str) -> dict:
    """The pipeline arguments of a preset besides the UNet: scheduler, normalisation, beta dtype."""
    scheduler = ddim_scheduler(preset)  # checks the name
    return dict(
        scheduler=scheduler,
        image_normalization=PRESETS[preset].image_normalization,
        float64_betas=PRESETS[preset].float64_betas,
    )


def _load_unet(path: str, kwargs: dict) -> UNet2DModel:
    """The ``UNet2DModel`` of a folder or Hub id that is not a saved pipeline of this class: in ``unet/`` or at the
    top (a bare UNet). ``kwargs`` go to ``UNet2DModel.from_pretrained``."""
    if os.path.isdir(path):
        subfolder = "unet" if os.path.isfile(os.path.join(path, "unet", "config.json")) else None
        return UNet2DModel.from_pretrained(path, subfolder=subfolder, **kwargs)
    try:
        return UNet2DModel.from_pretrained(path, subfolder="unet", **kwargs)
    except OSError:
        return UNet2DModel.from_pretrained(path, **kwargs)


def _refuse_conditional_unet(unet, path: str | None = None) -> None:
    """A class-conditional UNet needs class labels, which sampling from noise alone never gives."""
    config = getattr(unet, "config", {})
    if config.get("num_class_embeds") is None and config.get("class_embed_type") is None:
        return
    where = f"{path} holds" if path else "this is"
    raise ValueError(
        f"{where} a class-conditional UNet (num_class_embeds={config.get('num_class_embeds')}): it needs class "
        "labels, which DDIM from noise does not give. Sample it with `python -m pipelines.conditional_ddpm "
        f"--pretrained {path or 'FOLDER'} --scheduler ddim` instead"
    )


def _stored_pipeline_config(class_name: str, path: str, hub_kwargs: dict) -> dict | None:
    """The model_index.json of a saved pipeline of `class_name` at `path`, or None if it is something else."""
    try:
        index = DiffusionPipeline.load_config(path, **hub_kwargs)
    except (OSError, ValueError):
        return None  # a bare UNet folder or repo: no model_index.json
    stored = index.get("_class_name")
    stored = stored[-1] if isinstance(stored, list) else stored  # [module, class] when the folder carries its code
    return dict(index) if stored == class_name else None


def _unit_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 as adapters.digits.to_uint8(value_range=(0, 1)) does; repeated here because this file
    ships alone to the Hub (see the module docstring)."""
    return (images * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def _to_pil(image: torch.Tensor) -> PIL.Image.Image:
    """uint8 [C, H, W] to a grey (C = 1) or RGB (C = 3) PIL image."""
    array = image.permute(1, 2, 0).numpy()
    return PIL.Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)


def _check_training_schedule(path: str, hub_kwargs: dict) -> None:
    """Warns if the checkpoint stores a scheduler trained on another noise schedule than the presets'."""
    try:
        stored = DDIMScheduler.load_config(path, subfolder="scheduler", **hub_kwargs)
    except OSError:
        return  # no stored scheduler: the preset defines the schedule
    wanted = dict(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule="linear",
        beta_start=BETA_START,
        beta_end=BETA_END,
    )
    found = {key: stored.get(key, value) for key, value in wanted.items()}
    if any(not np.isclose(found[k], v) if isinstance(v, float) else found[k] != v for k, v in wanted.items()):
        warnings.warn(
            f"{path} stores the training schedule {found}; the DDIM presets sample with {wanted}", stacklevel=3
        )
