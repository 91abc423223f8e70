"""Class-conditional DDPM with classifier-free guidance (Ho & Salimans, 2022) as a diffusers pipeline.

    pipe = ConditionalDDPMPipeline.from_pretrained("hub_cards/cfg-mnistm")
    images = pipe(digit=3, guidance=2.0).images  # or guidance_scale=3.0, diffusers' spelling of the same

Steps. The folder's scheduler is the default sampler and `num_inference_steps=None` picks the steps it needs
(`default_inference_steps`): every trained step for the ancestral `DDPMScheduler` (the report's sampler), 10 for
the multistep solvers (DPM-Solver++, UniPC), 50 for the rest (DDIM). The shipped folders store DPM-Solver++, so
the call above takes 10 UNet calls, under a second on a CPU; the report's sampler is
`pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config, timestep_spacing="leading")`.

Loading. `from_pretrained` is diffusers' own (dtype and dtype dicts, device_map, variant, use_safetensors,
local_files_only, ... behave as for any diffusers pipeline).

Sharing. `save_pretrained` also writes this file into the folder and names it in `model_index.json` as
`["pipeline_conditional_ddpm", "ConditionalDDPMPipeline"]`, so that with only diffusers installed
`DiffusionPipeline.from_pretrained(folder_or_repo_id, trust_remote_code=True)` runs this same code. Hence this
file imports nothing from the project. `ConditionalDDPMPipeline.from_pretrained` reads that entry as this class
(the installed one), so it needs no `trust_remote_code`.

Guidance convention. `guidance` is the report's w:

    eps = (1 + w) * eps(x_t, c) - w * eps(x_t, null)

diffusers' `guidance_scale` s mixes eps(null) + s * (eps(c) - eps(null)), the same thing with s = 1 + w; `__call__`
takes either spelling (not both). w = 0 (s = 1) is the plain conditional model and costs one UNet forward per step;
w > 0 runs the conditional and the null-class inputs as one batch of twice the size. As in diffusers, a step-end
callback may change `pipe._guidance_scale`; the next step uses the new value.

Distilled students. A folder made by `training/train_distill.py` holds a student that has the guidance built
in (Meng et al., 2023) and maps a noisy image straight to its end point (a consistency model sampled with
diffusers' `LCMScheduler`). Its `model_index.json` records `distilled_guidance` (the w it was distilled at: one
UNet forward per step, no null branch; another w is refused) and `default_inference_steps` (the steps
`pipe(digit=3)` takes when none are given).

Class labels. `digit` has diffusers' name too: `class_labels` (as `DiTPipeline` takes it; give one of the two).
`pipe.labels` maps label names to class ids and `pipe.get_label_ids(["three", "7"])` turns names into ids, from the
`id2label` map stored in `model_index.json` (by default each digit is named by its numeral and its English word).

Null class. The UNet is a `UNet2DModel` with `num_class_embeds = 11`; labels 0-9 are digits and the
"no label" id used for the unconditional branch (label dropout during training) is stored in the
pipeline's config as `null_class_id` (model_index.json), so no magic number lives in the code.

Time convention of `capture_timesteps`, as in the report: t = T is the pure noise the loop starts from,
and x_t is the sample *fed to* the denoising step whose diffusers timestep is t - 1; t = 1 is the input
of the last step and t = 0 is the final output. With the 400-step DDPM schedule every t in 0..400 is
visited; with fewer inference steps (e.g. DDIM) only `scheduler.timesteps + 1` and 0 are.

| variable | paper symbol |
|---|---|
| `latents` | x_t (diffusers' name; this pipeline works on pixels, there is no VAE) |
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

import numpy as np
import PIL.Image
import torch
from diffusers import DDPMScheduler, DiffusionPipeline, ImagePipelineOutput, SchedulerMixin, UNet2DModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils.torch_utils import randn_tensor

NUM_DIGITS = 10
DEFAULT_GUIDANCE = 2.0  # w, the report's setting
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# DiTPipeline's form: class id (a string, as JSON keys are) -> comma-separated names of the class
DIGIT_ID2LABEL = {str(digit): f"{digit}, {word}" for digit, word in enumerate(DIGIT_WORDS)}
OUTPUT_TYPES = ("pil", "np", "pt", "latent")
# Steps that give good digits when the caller names none: the ancestral DDPM sampler needs every trained step,
# multistep solvers (they take a `solver_order`) are good at 6-10, DDIM-style ones at 50.
SOLVER_DEFAULT_STEPS = 10
OTHER_DEFAULT_STEPS = 50


def default_inference_steps(scheduler: SchedulerMixin) -> int:
    """The number of inference steps `__call__` uses for `scheduler` when `num_inference_steps` is None (and the
    pipeline stores no `default_inference_steps` of its own)."""
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
    r"""Sample digits from a class-conditional `UNet2DModel` with classifier-free guidance.

    Args:
        unet ([`UNet2DModel`]):
            A UNet with `num_class_embeds` = number of digits + 1 (the null class).
        scheduler ([`SchedulerMixin`]):
            Any diffusers scheduler that predicts from epsilon (DDPM, DDIM, DPM-Solver++, UniPC, Euler, ...).
        null_class_id (`int`, *optional*, defaults to 10):
            The class embedding index of "no label", stored in `model_index.json`.
        distilled_guidance (`float`, *optional*):
            For a guidance-distilled student: the w built into it. Each step is then one forward of the plain
            conditional input, and a call asking for another w is refused.
        default_inference_steps (`int`, *optional*):
            The steps a call without `num_inference_steps` takes (else `default_inference_steps(scheduler)`).
        id2label (`dict[str, str]`, *optional*):
            `DiTPipeline`'s label map: each digit's id ("0"-"9") to its comma-separated names, stored in
            `model_index.json`. Defaults to `DIGIT_ID2LABEL` ("3" -> "3, three"). `pipe.labels` is its inverse.
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents", "noise_pred"]

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: SchedulerMixin,
        null_class_id: int = NUM_DIGITS,
        distilled_guidance: float | None = None,
        default_inference_steps: int | None = None,
        id2label: dict[str, str] | None = None,
    ):
        super().__init__()
        num_class_embeds = unet.config.num_class_embeds
        if num_class_embeds is None or not 0 <= null_class_id < num_class_embeds:
            raise ValueError(
                f"null_class_id={null_class_id} must be a class embedding of the UNet "
                f"(num_class_embeds={num_class_embeds})"
            )
        if distilled_guidance is not None and not (_is_finite_number(distilled_guidance) and distilled_guidance >= 0):
            raise ValueError(f"distilled_guidance must be a finite w >= 0 or None, got {distilled_guidance!r}")
        steps = default_inference_steps
        if steps is not None and not (_is_int(steps) and steps >= 1):
            raise ValueError(f"default_inference_steps must be an int >= 1 or None, got {default_inference_steps!r}")
        id2label = _checked_id2label(DIGIT_ID2LABEL if id2label is None else id2label)
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(
            null_class_id=null_class_id,
            distilled_guidance=distilled_guidance,
            default_inference_steps=default_inference_steps,
            id2label=id2label,
        )
        # as in DiTPipeline: every comma-separated name of a class -> its id, sorted by name
        self.labels = dict(
            sorted((name.strip(), int(key)) for key, names in id2label.items() for name in names.split(","))
        )

    def get_label_ids(self, label: str | Sequence[str]) -> list[int]:
        r"""The class ids of label names, for `class_labels` (`DiTPipeline.get_label_ids`).

        Args:
            label (`str` or `list[str]`):
                A name of `pipe.labels` ("three", "3") or a list of them. A bare string is one name (DiT would
                split it into characters).

        Returns:
            `list[int]`: the id of each name, in order.
        """
        names = [label] if isinstance(label, str) else list(label) if isinstance(label, Sequence) else [label]
        for name in names:
            if not isinstance(name, str) or name not in self.labels:
                raise ValueError(
                    f"label {name!r} is not a name of this pipeline's classes; choose from: {', '.join(self.labels)}"
                )
        return [self.labels[name] for name in names]

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
    def guidance_scale(self) -> float:
        """diffusers' s = 1 + w of the call in progress (or the last call)."""
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Whether the step runs the null-class branch too: s > 1, i.e. w > 0, unless the guidance is distilled."""
        return self._guidance_scale > 1 and self.config.get("distilled_guidance") is None

    def _default_steps(self) -> int:
        return self.config.get("default_inference_steps") or default_inference_steps(self.scheduler)

    @property
    def num_timesteps(self) -> int:
        """The number of denoising steps of the call in progress (or the last call)."""
        return self._num_timesteps

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
        guidance_scale=None,
        generator=None,
        class_labels=None,
    ) -> None:
        """Raise a ValueError naming the argument for any input `__call__` cannot honour, before any work.

        `num_inference_steps=None` means `default_inference_steps(self.scheduler)`; `guidance` and `guidance_scale`
        both None mean w = 2. Type errors are ValueErrors here too, so that a float digit or image count fails with
        its name rather than deep inside `range` or `torch.tensor`.
        """
        digits = _checked_class_ids(digit, class_labels)
        _check_guidance(guidance, guidance_scale)
        if not _is_int(num_images_per_digit) or num_images_per_digit < 1:
            raise ValueError(f"num_images_per_digit must be an int >= 1, got {num_images_per_digit!r}")
        _check_distilled_guidance(guidance, guidance_scale, self.config.get("distilled_guidance"))
        _check_inference_steps(num_inference_steps, self.scheduler.config)
        num_images = len(digits) * num_images_per_digit
        if latents is not None:
            expected = (num_images, *self.sample_shape())
            if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != expected:
                got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
                raise ValueError(
                    f"latents must be a tensor of shape {expected} (one x_T per image: {len(digits)} digits x "
                    f"{num_images_per_digit} images, channels, height, width), got {got}"
                )
            if not latents.is_floating_point() or not torch.isfinite(latents).all():
                raise ValueError("latents must be finite floating-point noise")
        if isinstance(generator, list) and len(generator) != num_images:
            raise ValueError(f"got {len(generator)} generators for {num_images} images; give one, or one per image")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {', '.join(map(repr, OUTPUT_TYPES))}, got {output_type!r}")
        if capture_timesteps is not None and not all(_is_int(t) for t in capture_timesteps):
            raise ValueError(f"capture_timesteps must be ints, got {list(capture_timesteps)!r}")
        unknown = [k for k in callback_on_step_end_tensor_inputs or () if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs {unknown} are not tensors of this pipeline; "
                f"choose from {self._callback_tensor_inputs}"
            )

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

    @classmethod
    def check_call_arguments(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        guidance: float | None = None,
        guidance_scale: float | None = None,
        num_inference_steps: int | None = None,
        spelling: dict[str, str] | None = None,
        **hub_kwargs,
    ) -> None:
        r"""The rules of `__call__` on guidance and steps, checked against a saved folder before any weight loads.

        The same rules (and messages) as `check_inputs`, with the model's part read from the folder's
        `model_index.json` (`distilled_guidance`) and scheduler config (trained or distilled steps). The commands
        call it on their flags before loading the model.

        Args:
            pretrained_model_name_or_path (`str` or `os.PathLike`):
                A saved `ConditionalDDPMPipeline` folder or Hub id.
            guidance, guidance_scale, num_inference_steps:
                As in `__call__` (None: the default).
            spelling (`dict[str, str]`, *optional*):
                How the caller names the arguments in messages, e.g. `{"guidance": "--guidance"}`.
            hub_kwargs:
                `revision`, `local_files_only`, ... as for `from_pretrained`.
        """
        _check_guidance(guidance, guidance_scale, spelling)
        index = DiffusionPipeline.load_config(pretrained_model_name_or_path, **hub_kwargs)
        _check_distilled_guidance(guidance, guidance_scale, index.get("distilled_guidance"), spelling)
        # any scheduler class reads scheduler_config.json as it stands (read, not built)
        scheduler_config = DDPMScheduler.load_config(pretrained_model_name_or_path, subfolder="scheduler", **hub_kwargs)
        _check_inference_steps(num_inference_steps, scheduler_config, spelling)

    def sample_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image x_t."""
        size = self.unet.config.sample_size
        return (self.unet.config.in_channels, *((size, size) if isinstance(size, int) else size))

    def _to_output(self, latents: torch.Tensor, output_type: str):
        """[-1, 1] model range -> images in [0, 1] as PIL list, numpy NHWC or torch NCHW; "latent" as it is."""
        if output_type == "latent":
            return latents
        images = (latents / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            return images.cpu()
        images = images.cpu().permute(0, 2, 3, 1).float().numpy()
        return self.numpy_to_pil(images) if output_type == "pil" else images

    @torch.no_grad()
    def __call__(
        self,
        digit: int | Sequence[int] | None = None,
        guidance: float | None = None,
        num_images_per_digit: int = 1,
        num_inference_steps: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        capture_timesteps: Sequence[int] | None = None,
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        guidance_scale: float | None = None,
        class_labels: int | Sequence[int] | None = None,
    ) -> ConditionalDDPMPipelineOutput | tuple:
        r"""Generate `num_images_per_digit` images of each digit in `digit`.

        Args:
            digit (`int` or `list[int]`, *optional*, defaults to 0):
                A digit 0-9 or a list of them (repeats allowed); the output is digit-major. Give this or
                `class_labels`, not both.
            guidance (`float`, *optional*, defaults to 2.0):
                The report's guidance weight w (finite, >= 0): eps = (1 + w) eps(x, c) - w eps(x, null). w = 0 is
                the plain conditional model. Give this or `guidance_scale`, not both.
            num_images_per_digit (`int`, *optional*, defaults to 1):
                Images drawn for each entry of `digit`.
            num_inference_steps (`int`, *optional*):
                Denoising steps; None uses the folder's `default_inference_steps`, else
                `default_inference_steps(self.scheduler)`: all trained steps for DDPM,
                10 for DPM-Solver/UniPC, 50 otherwise.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*):
                Makes sampling deterministic (same seed, same images). As in diffusers' pipelines it draws x_T, then
                the noise of stochastic schedulers' steps (DDPM, LCM); given `latents`, the draw of x_T is made and
                set aside, so the generator that made `latents`, or one seeded alike, gives the images of the same
                call without `latents`. A list holds one generator per image.
            latents (`torch.Tensor`, *optional*):
                x_T, the pure noise to start from, [N, C, H, W] with N = number of images, in the output's order;
                None draws it from `generator`.
            output_type (`str`, *optional*, defaults to `"pil"`):
                `"pil"` (list of PIL images), `"np"` ([N, H, W, 3] in [0, 1]), `"pt"` ([N, 3, H, W] in [0, 1]) or
                `"latent"` (x_0 as the model made it: [N, 3, H, W] in about [-1, 1], not clamped, on the device).
            capture_timesteps (`list[int]`, *optional*):
                Report-convention t values whose x_t to return in `intermediates` (T = pure noise, 1 = input of the
                last step, 0 = final output), in `output_type`. A convenience that reads the latents at the
                step-end point of `callback_on_step_end`, after any edit the callback makes.
            return_dict (`bool`, *optional*, defaults to `True`):
                Return a [`ConditionalDDPMPipelineOutput`] rather than a tuple.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*):
                `fn(pipe, step_index, timestep, callback_kwargs)` called after each scheduler step; `callback_kwargs`
                holds the tensors named in `callback_on_step_end_tensor_inputs` (`latents` is then x_{t-1}), and a
                returned `{"latents": ...}` replaces them. It may also change `pipe._guidance_scale`.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*, defaults to `["latents"]`):
                Which of `_callback_tensor_inputs` (`latents`, `noise_pred`: the guided eps of the step) the
                callback receives.
            guidance_scale (`float`, *optional*):
                diffusers' spelling of the guidance, s = 1 + w (finite, >= 1; 1 is unguided).
            class_labels (`int` or `list[int]`, *optional*):
                diffusers' name of `digit` (`DiTPipeline`'s): class ids 0-9, e.g. `pipe.get_label_ids(["three"])`.

        Examples:

        ```py
        >>> import torch
        >>> from pipelines import ConditionalDDPMPipeline

        >>> pipe = ConditionalDDPMPipeline.from_pretrained("hub_cards/cfg-mnistm-small")
        >>> pipe.set_progress_bar_config(disable=True)
        >>> out = pipe(digit=[3, 7], guidance_scale=3.0, num_images_per_digit=2, generator=torch.manual_seed(0))
        >>> out.labels
        [3, 3, 7, 7]
        >>> out.images[0].size
        (28, 28)
        ```

        Returns:
            [`ConditionalDDPMPipelineOutput`] or `tuple`: `(images, labels, intermediates)`.
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
            guidance_scale,
            generator,
            class_labels,
        )
        if guidance_scale is None:
            built_in = self.config.get("distilled_guidance")
            if guidance is None:
                guidance = DEFAULT_GUIDANCE if built_in is None else built_in
            guidance_scale = 1 + guidance
        self._guidance_scale = guidance_scale
        digits = _class_id_list(digit, class_labels)
        if num_inference_steps is None:  # not `or`: 0 is an error (check_inputs), not "the default"
            num_inference_steps = self._default_steps()
        labels = [int(d) for d in digits for _ in range(num_images_per_digit)]
        device = self._execution_device

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        # Report time of the latents after step i: the input of step i + 1, or t = 0 after the last step.
        report_t_after = [int(t) + 1 for t in timesteps[1:]] + [0]
        visited = {int(timesteps[0]) + 1, *report_t_after}
        capture = {int(t) for t in capture_timesteps or ()}
        if not capture <= visited:
            ordered = [str(t) for t in sorted(visited)]
            shown = ", ".join(ordered if len(ordered) <= 8 else [*ordered[:3], "...", *ordered[-2:]])
            spacing = self.scheduler.config.get("timestep_spacing")
            raise ValueError(
                f"capture_timesteps {sorted(capture - visited)} are not visited with {num_inference_steps} "
                f"inference steps of {type(self.scheduler).__name__}{f' ({spacing} spacing)' if spacing else ''}; "
                f"the visited t are {shown} (0 and scheduler.timesteps + 1)"
            )

        unet = self.unet
        # Only DDPM/DDIM-style schedulers take a generator in step(); multistep solvers (DPM, UniPC) do not.
        step_accepts_generator = "generator" in inspect.signature(self.scheduler.step).parameters
        step_kwargs = {"generator": generator} if step_accepts_generator else {}
        latents = self.prepare_latents((len(labels), *self.sample_shape()), unet.dtype, device, generator, latents)
        # 1.0 for DDPM, DDIM and the multistep solvers; Euler-type schedulers start from a wider noise
        latents = latents * self.scheduler.init_noise_sigma
        class_labels = torch.tensor(labels, device=device)
        both_labels = torch.cat([class_labels, torch.full_like(class_labels, self.config.null_class_id)])

        intermediates = {}
        if int(timesteps[0]) + 1 in capture:
            intermediates[int(timesteps[0]) + 1] = self._to_output(latents, output_type)

        for i, timestep in enumerate(self.progress_bar(timesteps)):
            # 1. predict noise; conditional and null branches share one batched forward
            guided = self.do_classifier_free_guidance
            model_input = torch.cat([latents, latents]) if guided else latents
            model_input = self.scheduler.scale_model_input(model_input, timestep)
            noise_pred = unet(model_input, timestep, class_labels=both_labels if guided else class_labels).sample
            # 2. classifier-free guidance: eps = (1 + w) eps(c) - w eps(null)
            if guided:
                w = self._guidance_scale - 1
                noise_cond, noise_null = noise_pred.chunk(2)
                noise_pred = (1 + w) * noise_cond - w * noise_null
            # 3. x_{t-1} from x_t: the scheduler owns the update (DDPM eq. 11, DDIM eq. 12)
            latents = self.scheduler.step(noise_pred, timestep, latents, **step_kwargs).prev_sample
            # 4. diffusers' step-end hook, then the capture convenience on the (possibly edited) latents
            if callback_on_step_end is not None:
                tensors = {"latents": latents, "noise_pred": noise_pred}
                callback_kwargs = {name: tensors[name] for name in callback_on_step_end_tensor_inputs}
                outputs = callback_on_step_end(self, i, timestep, callback_kwargs) or {}
                latents = outputs.pop("latents", latents)
            if report_t_after[i] in capture:
                intermediates[report_t_after[i]] = self._to_output(latents, output_type)

        images = self._to_output(latents, output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return images, labels, intermediates
        return ConditionalDDPMPipelineOutput(images=images, labels=labels, intermediates=intermediates)


def _spelled(name: str, spelling: dict[str, str] | None) -> str:
    """An argument's name as the caller spells it (a command's `--guidance`), for messages."""
    return (spelling or {}).get(name, name)


def _check_guidance(guidance, guidance_scale, spelling: dict[str, str] | None = None) -> None:
    """`guidance` (w) or `guidance_scale` (1 + w), not both; finite, w >= 0. None: the default."""
    g, gs = _spelled("guidance", spelling), _spelled("guidance_scale", spelling)
    if guidance is not None and guidance_scale is not None:
        raise ValueError(f"give {g} (w, got {guidance!r}) or {gs} (diffusers' 1 + w, got {guidance_scale!r}), not both")
    # nan > 0 is False (it would silently run unguided) and w = inf turns every image black.
    if guidance_scale is not None:
        if not _is_finite_number(guidance_scale) or guidance_scale < 1:
            raise ValueError(f"{gs} must be a finite number >= 1 (1 + w), got {guidance_scale!r}")
    elif guidance is not None:
        if not _is_finite_number(guidance):
            raise ValueError(f"{g} must be a finite number w >= 0, got {guidance!r}")
        if guidance < 0:
            raise ValueError(f"{g} w must be >= 0 (eps = (1+w)*eps(c) - w*eps(null)), got {guidance}")


def _check_distilled_guidance(guidance, guidance_scale, distilled, spelling: dict[str, str] | None = None) -> None:
    """A guidance-distilled student (`distilled_guidance` = its built-in w) samples at that w only."""
    if distilled is None:
        return
    asked = guidance_scale - 1 if guidance_scale is not None else guidance
    if asked is not None and not math.isclose(asked, distilled, abs_tol=1e-9):
        name = _spelled("guidance_scale" if guidance_scale is not None else "guidance", spelling)
        raise ValueError(
            f"this model was distilled with the guidance built in at w = {distilled:g}; it cannot sample at "
            f"w = {asked:g} ({name}). Leave {name} out, or use the teacher for other w"
        )


def _check_inference_steps(num_inference_steps, scheduler_config, spelling: dict[str, str] | None = None) -> None:
    """An int from 1 to every trained step, or for a consistency sampler the teacher steps it was distilled on;
    None: the default."""
    distilled_steps = scheduler_config.get("original_inference_steps")
    most = distilled_steps or scheduler_config.get("num_train_timesteps", 1000)  # diffusers schedulers' default
    steps = num_inference_steps
    if steps is not None and not (_is_int(steps) and 1 <= steps <= most):
        which = "teacher steps it was distilled on" if distilled_steps else "steps the model was trained with"
        raise ValueError(
            f"{_spelled('num_inference_steps', spelling)} must be an int between 1 and the {most} {which} "
            f"(or None for the default), got {num_inference_steps!r}"
        )


def _is_finite_number(value) -> bool:
    """A real number that is not a bool, nan or infinite."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    """A Python or NumPy integer, not a bool (True would silently mean digit 1)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _digit_list(digit) -> list:
    """The entries of `digit` (one value, a sequence or an array; nested ones read in order, as DiT's reshape(-1))
    as a list, not yet checked."""
    if isinstance(digit, (np.ndarray, torch.Tensor)):
        return digit.reshape(-1).tolist()
    if isinstance(digit, Sequence) and not isinstance(digit, (str, bytes)):
        return [value for entry in digit for value in _digit_list(entry)]
    return [digit]


def _class_id_list(digit, class_labels) -> list:
    """The class ids asked for by `digit` or its diffusers name `class_labels` (neither: digit 0), not yet checked."""
    if class_labels is not None:
        return _digit_list(class_labels)
    return _digit_list(0 if digit is None else digit)


def _checked_class_ids(digit, class_labels) -> list:
    """`_class_id_list`, or a ValueError naming the argument: both given, empty, or not an id 0-9."""
    if digit is not None and class_labels is not None:
        raise ValueError(
            f"give digit (got {digit!r}) or class_labels (diffusers' name for the same, got {class_labels!r}), not both"
        )
    name = "digit" if class_labels is None else "class_labels"
    ids = _class_id_list(digit, class_labels)
    if not ids:
        raise ValueError(f"{name} is an empty list: there is nothing to sample")
    for value in ids:
        if isinstance(value, str):
            raise ValueError(
                f"{name} must be an int in 0-{NUM_DIGITS - 1}, got the name {value!r}: "
                f"pipe.get_label_ids([{value!r}]) gives its id"
            )
        if not _is_int(value) or not 0 <= value < NUM_DIGITS:
            raise ValueError(f"{name} must be an int in 0-{NUM_DIGITS - 1}, got {value!r}")
    return ids


def _checked_id2label(id2label) -> dict[str, str]:
    """`id2label` with string keys (JSON's, so that a saved and a loaded pipeline agree), or a ValueError: the keys
    must be the digits' ids 0-9, each once, and the names non-empty and not shared between classes."""
    if not isinstance(id2label, dict):
        raise ValueError(f"id2label must be a dict of class id -> names, got {type(id2label).__name__}")
    keys = {}
    for key, names in id2label.items():
        if isinstance(key, bool) or not isinstance(key, (int, str)) or not str(key).isdigit():
            raise ValueError(f"id2label's keys must be class ids 0-{NUM_DIGITS - 1}, got {key!r}")
        if not isinstance(names, str) or not all(name.strip() for name in names.split(",")):
            raise ValueError(f"id2label[{key!r}] must be comma-separated non-empty names, got {names!r}")
        keys.setdefault(int(key), []).append(names)
    if sorted(keys) != list(range(NUM_DIGITS)) or any(len(v) > 1 for v in keys.values()):
        raise ValueError(f"id2label must name each class id 0-{NUM_DIGITS - 1} once, got the keys {list(id2label)}")
    owner = {}
    for key, (names,) in sorted(keys.items()):
        for name in (name.strip() for name in names.split(",")):
            if owner.setdefault(name, key) != key:
                raise ValueError(f"id2label names both class {owner[name]} and class {key} {name!r}")
    return {str(key): names for key, (names,) in sorted(keys.items())}
