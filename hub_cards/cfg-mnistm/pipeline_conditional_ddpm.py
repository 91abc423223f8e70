"""Class-conditional DDPM with classifier-free guidance (Ho & Salimans, 2022) as a diffusers pipeline.

    pipe = ConditionalDDPMPipeline.from_pretrained("hub_cards/cfg-mnistm")
    images = pipe(digit=3, guidance=2.0).images

Steps. The folder's scheduler is the default sampler and `num_inference_steps=None` picks the steps it needs
(`default_inference_steps`): every trained step for the ancestral `DDPMScheduler` (the report's sampler), 10 for
the multistep solvers (DPM-Solver++, UniPC), 50 for the rest (DDIM). The shipped folders store DPM-Solver++, so
the call above takes 10 UNet calls, under a second on a CPU; the report's sampler is
`pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config, timestep_spacing="leading")`.

Sharing. `save_pretrained` also writes this file into the folder and names it in `model_index.json` as
`["pipeline_conditional_ddpm", "ConditionalDDPMPipeline"]`, so that with only diffusers installed
`DiffusionPipeline.from_pretrained(folder_or_repo_id, trust_remote_code=True)` runs this same code. Hence this
file imports nothing from the project.

Guidance convention. `guidance` is the report's w:

    eps = (1 + w) * eps(x_t, c) - w * eps(x_t, null)

diffusers' `guidance_scale` s mixes eps(null) + s * (eps(c) - eps(null)), the same thing with s = 1 + w.
w = 0 is the plain conditional model and costs one UNet forward per step; w > 0 runs the conditional
and the null-class inputs as one batch of twice the size.

Null class. The UNet is a `UNet2DModel` with `num_class_embeds = 11`; labels 0-9 are digits and the
"no label" id used for the unconditional branch (label dropout during training) is stored in the
pipeline's config as `null_class_id` (model_index.json), so no magic number lives in the code.

Time convention of `capture_timesteps`, as in the report: t = T is the pure noise the loop starts from,
and x_t is the sample *fed to* the denoising step whose diffusers timestep is t - 1; t = 1 is the input
of the last step and t = 0 is the final output. With the 400-step DDPM schedule every t in 0..400 is
visited; with fewer inference steps (e.g. DDIM) only `scheduler.timesteps + 1` and 0 are.

| variable | paper symbol |
|---|---|
| `sample` | x_t |
| `noise_pred` | guided eps_theta(x_t, c) |
| `timestep` | t - 1 (diffusers' 0-based index of the step that maps x_t to x_{t-1}) |
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import diffusers
import numpy as np
import PIL.Image
import torch
from diffusers import DDPMScheduler, DiffusionPipeline, ImagePipelineOutput, SchedulerMixin, UNet2DModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils.torch_utils import randn_tensor

NUM_DIGITS = 10
# Steps that give good digits when the caller names none: the ancestral DDPM sampler needs every trained step,
# multistep solvers (they take a `solver_order`) are good at 6-10, DDIM-style ones at 50.
SOLVER_DEFAULT_STEPS = 10
OTHER_DEFAULT_STEPS = 50


def default_inference_steps(scheduler: SchedulerMixin) -> int:
    """The number of inference steps `__call__` uses for `scheduler` when `num_inference_steps` is None."""
    trained_steps = scheduler.config.num_train_timesteps
    if isinstance(scheduler, DDPMScheduler):
        return trained_steps
    # the signature, not the config: a config converted from another scheduler keeps that one's keys
    if "solver_order" in inspect.signature(type(scheduler).__init__).parameters:
        return min(SOLVER_DEFAULT_STEPS, trained_steps)
    return min(OTHER_DEFAULT_STEPS, trained_steps)


@dataclass
class ConditionalDDPMPipelineOutput(ImagePipelineOutput):
    """`images` ordered digit-major, `labels` the digit of each image, `intermediates` {t: images}."""

    labels: list[int]
    intermediates: dict[int, list[PIL.Image.Image] | np.ndarray | torch.Tensor]


class ConditionalDDPMPipeline(DiffusionPipeline):
    """Sample digits from a class-conditional `UNet2DModel` with classifier-free guidance.

    Args:
        unet: a `UNet2DModel` with `num_class_embeds` = number of digits + 1 (the null class).
        scheduler: any diffusers scheduler that predicts from epsilon (DDPM, DDIM, ...).
        null_class_id: the class embedding index of "no label" (10 for 10 digits).
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["sample", "noise_pred"]

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin, null_class_id: int = NUM_DIGITS):
        super().__init__()
        num_class_embeds = unet.config.num_class_embeds
        if num_class_embeds is None or not 0 <= null_class_id < num_class_embeds:
            raise ValueError(
                f"null_class_id={null_class_id} must be a class embedding of the UNet "
                f"(num_class_embeds={num_class_embeds})"
            )
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(null_class_id=null_class_id)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> ConditionalDDPMPipeline:
        """Loads a saved folder or Hub id into this class, without `trust_remote_code`.

        diffusers would import the copy of this file that the folder carries whenever model_index.json names one;
        the installed class is the same code, so the components are loaded here instead. `unet=` / `scheduler=`
        replace a component; `torch_dtype` goes to the UNet; `revision`, `cache_dir`, `local_files_only`, `token`
        and `variant` go to both loaders.
        """
        hub_kwargs = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
        torch_dtype = kwargs.pop("torch_dtype", None)
        variant = kwargs.pop("variant", None)
        components = {name: kwargs.pop(name) for name in ("unet", "scheduler") if name in kwargs}
        if kwargs:
            raise ValueError(f"unexpected arguments for {cls.__name__}.from_pretrained: {sorted(kwargs)}")
        index = DiffusionPipeline.load_config(pretrained_model_name_or_path, **hub_kwargs)
        for name in ("unet", "scheduler"):
            if name in components:
                continue
            library, class_name = index.get(name) or (None, None)
            component_class = getattr(diffusers, class_name or "", None)
            if library != "diffusers" or component_class is None:
                raise ValueError(
                    f"{pretrained_model_name_or_path}: model_index.json names {name} = {[library, class_name]}; "
                    "expected a diffusers class"
                )
            extra = {"torch_dtype": torch_dtype} if name == "unet" and torch_dtype is not None else {}
            components[name] = component_class.from_pretrained(
                pretrained_model_name_or_path, subfolder=name, variant=variant, **hub_kwargs, **extra
            )
        return cls(**components, null_class_id=index.get("null_class_id", NUM_DIGITS))

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

    def check_inputs(
        self,
        digit,
        guidance,
        num_images_per_digit,
        num_inference_steps,
        output_type="pil",
        capture_timesteps=None,
        callback_on_step_end_tensor_inputs=None,
        latents=None,
    ) -> None:
        """Raise a ValueError naming the argument for any input `__call__` cannot honour, before any work.

        `num_inference_steps=None` means `default_inference_steps(self.scheduler)`. Type errors are ValueErrors
        here too, so that a float digit or image count fails with its name rather than deep inside `range` or
        `torch.tensor`.
        """
        digits = _digit_list(digit)
        if not digits:
            raise ValueError("digit is an empty list: there is nothing to sample")
        for value in digits:
            if not _is_int(value) or not 0 <= value < NUM_DIGITS:
                raise ValueError(f"digit must be an int in 0-{NUM_DIGITS - 1}, got {value!r}")
        # nan > 0 is False (it would silently run unguided) and w = inf turns every image black.
        if isinstance(guidance, bool) or not isinstance(guidance, numbers.Real) or not math.isfinite(guidance):
            raise ValueError(f"guidance must be a finite number w >= 0, got {guidance!r}")
        if guidance < 0:
            raise ValueError(f"guidance w must be >= 0 (eps = (1+w)*eps(c) - w*eps(null)), got {guidance}")
        if not _is_int(num_images_per_digit) or num_images_per_digit < 1:
            raise ValueError(f"num_images_per_digit must be an int >= 1, got {num_images_per_digit!r}")
        trained_steps = self.scheduler.config.num_train_timesteps
        if num_inference_steps is not None and (
            not _is_int(num_inference_steps) or not 1 <= num_inference_steps <= trained_steps
        ):
            raise ValueError(
                f"num_inference_steps must be an int between 1 and the {trained_steps} steps the model was "
                f"trained with (or None for the scheduler's default), got {num_inference_steps!r}"
            )
        if latents is not None:
            expected = (len(digits) * num_images_per_digit, *self.sample_shape())
            if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != expected:
                got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
                raise ValueError(
                    f"latents must be a tensor of shape {expected} (one x_T per image: {len(digits)} digits x "
                    f"{num_images_per_digit} images, channels, height, width), got {got}"
                )
            if not latents.is_floating_point() or not torch.isfinite(latents).all():
                raise ValueError("latents must be finite floating-point noise")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        if capture_timesteps is not None and not all(_is_int(t) for t in capture_timesteps):
            raise ValueError(f"capture_timesteps must be ints, got {list(capture_timesteps)!r}")
        unknown = [k for k in callback_on_step_end_tensor_inputs or () if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs {unknown} are not tensors of this pipeline; "
                f"choose from {self._callback_tensor_inputs}"
            )

    def sample_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image x_t."""
        size = self.unet.config.sample_size
        return (self.unet.config.in_channels, *((size, size) if isinstance(size, int) else size))

    def _to_output(self, sample: torch.Tensor, output_type: str):
        """[-1, 1] model range -> images in [0, 1] as PIL list, numpy NHWC or torch NCHW."""
        images = (sample / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            return images.cpu()
        images = images.cpu().permute(0, 2, 3, 1).float().numpy()
        return self.numpy_to_pil(images) if output_type == "pil" else images

    @torch.no_grad()
    def __call__(
        self,
        digit: int | Sequence[int] = 0,
        guidance: float = 2.0,
        num_images_per_digit: int = 1,
        num_inference_steps: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        capture_timesteps: Sequence[int] | None = None,
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("sample",),
    ) -> ConditionalDDPMPipelineOutput | tuple:
        """Generate `num_images_per_digit` images of each digit in `digit`.

        Args:
            digit: a digit 0-9 or a list of them (repeats allowed); the output is digit-major.
            guidance: the report's w (finite, >= 0). diffusers' guidance_scale equals 1 + w.
            num_images_per_digit: images drawn for each entry of `digit`.
            num_inference_steps: denoising steps; None uses `default_inference_steps(self.scheduler)`: all
                trained steps for DDPM, 10 for DPM-Solver/UniPC, 50 otherwise.
            generator: makes sampling deterministic (same seed, same images): draws x_T unless `latents` is
                given, and the noise of stochastic schedulers' steps (DDPM).
            latents: x_T, the pure noise to start from, [N, C, H, W] with N = number of images, in the output's
                order; None draws it from `generator`.
            output_type: "pil" (list of PIL images), "np" ([N, H, W, 3] in [0, 1]) or "pt" ([N, 3, H, W]).
            capture_timesteps: report-convention t values whose x_t to return in `intermediates`
                (T = pure noise, 1 = input of the last step, 0 = final output). A convenience that reads
                the sample at the step-end point of `callback_on_step_end`, after any edit the callback makes.
            return_dict: return a `ConditionalDDPMPipelineOutput` rather than a tuple.
            callback_on_step_end: diffusers' convention, `fn(pipe, step_index, timestep, callback_kwargs)`
                called after each scheduler step; `callback_kwargs` holds the tensors named in
                `callback_on_step_end_tensor_inputs` (`sample` is then x_{t-1}), and a returned dict may
                replace them.
            callback_on_step_end_tensor_inputs: which of `_callback_tensor_inputs` the callback receives.

        Returns:
            `ConditionalDDPMPipelineOutput(images, labels, intermediates)`, or that tuple.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        self.check_inputs(
            digit,
            guidance,
            num_images_per_digit,
            num_inference_steps,
            output_type,
            capture_timesteps,
            callback_on_step_end_tensor_inputs,
            latents,
        )
        digits = _digit_list(digit)
        if num_inference_steps is None:  # not `or`: 0 is an error (check_inputs), not "the default"
            num_inference_steps = default_inference_steps(self.scheduler)
        labels = [int(d) for d in digits for _ in range(num_images_per_digit)]

        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        # Report time of the sample after step i: the input of step i + 1, or t = 0 after the last step.
        report_t_after = [int(t) + 1 for t in timesteps[1:]] + [0]
        visited = {int(timesteps[0]) + 1, *report_t_after}
        capture = {int(t) for t in capture_timesteps or ()}
        if not capture <= visited:
            raise ValueError(
                f"capture_timesteps {sorted(capture - visited)} are not visited with {num_inference_steps} "
                f"inference steps; choose from 0 and scheduler.timesteps + 1 (1..{max(visited)})"
            )

        unet = self.unet
        if latents is None:
            shape = (len(labels), *self.sample_shape())
            sample = randn_tensor(shape, generator=generator, device=self.device, dtype=unet.dtype)
        else:
            sample = latents.to(device=self.device, dtype=unet.dtype)
        # 1.0 for DDPM, DDIM and the multistep solvers; Euler-type schedulers start from a wider noise
        sample = sample * self.scheduler.init_noise_sigma
        class_labels = torch.tensor(labels, device=self.device)
        if guidance > 0:
            null_labels = torch.full_like(class_labels, self.config.null_class_id)
            class_labels = torch.cat([class_labels, null_labels])

        intermediates = {}
        if int(timesteps[0]) + 1 in capture:
            intermediates[int(timesteps[0]) + 1] = self._to_output(sample, output_type)

        # Only DDPM/DDIM-style schedulers take a generator in step(); multistep solvers (DPM, UniPC) do not.
        step_accepts_generator = "generator" in inspect.signature(self.scheduler.step).parameters
        step_kwargs = {"generator": generator} if step_accepts_generator else {}
        for i, timestep in enumerate(self.progress_bar(timesteps)):
            # 1. predict noise; conditional and null branches share one batched forward
            model_input = torch.cat([sample, sample]) if guidance > 0 else sample
            model_input = self.scheduler.scale_model_input(model_input, timestep)
            noise_pred = unet(model_input, timestep, class_labels=class_labels).sample
            # 2. classifier-free guidance: eps = (1 + w) eps(c) - w eps(null)
            if guidance > 0:
                noise_cond, noise_null = noise_pred.chunk(2)
                noise_pred = (1 + guidance) * noise_cond - guidance * noise_null
            # 3. x_{t-1} from x_t: the scheduler owns the update (DDPM eq. 11, DDIM eq. 12)
            sample = self.scheduler.step(noise_pred, timestep, sample, **step_kwargs).prev_sample
            # 4. diffusers' step-end hook, then the capture convenience on the (possibly edited) sample
            if callback_on_step_end is not None:
                tensors = {"sample": sample, "noise_pred": noise_pred}
                callback_kwargs = {name: tensors[name] for name in callback_on_step_end_tensor_inputs}
                outputs = callback_on_step_end(self, i, timestep, callback_kwargs) or {}
                sample = outputs.pop("sample", sample)
            if report_t_after[i] in capture:
                intermediates[report_t_after[i]] = self._to_output(sample, output_type)

        images = self._to_output(sample, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, labels, intermediates
        return ConditionalDDPMPipelineOutput(images=images, labels=labels, intermediates=intermediates)


def _is_int(value) -> bool:
    """A Python or NumPy integer, not a bool (True would silently mean digit 1)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _digit_list(digit) -> list:
    """The entries of `digit` (one value, a sequence or an array) as a list, not yet checked."""
    if isinstance(digit, (np.ndarray, torch.Tensor)):
        return digit.reshape(-1).tolist()
    if isinstance(digit, Sequence) and not isinstance(digit, (str, bytes)):
        return list(digit)
    return [digit]
