"""The old and the new training step and sampler, and each speed measure between them, as named settings.

A variant is a base and modifiers joined by '+': `old`, `new`, `old+device_data`, `new+bf16+channels_last`.

| modifier | what it switches on |
|---|---|
| device_data | the decoded uint8 images and the batch indices live on the device (else indexed on the host, copied) |
| device_rng | noise, t and label dropout drawn on the device (else on the CPU and copied), same seeding |
| no_sync | the loss is summed on the device (else `loss.item()` every step, a host synchronisation) |
| ema_foreach | `EMAModel(foreach=True)`: one kernel per EMA update (else one per tensor) |
| fused | fused AdamW on CUDA (else the default implementation) |
| tuned | cuDNN autotuning (`cudnn.benchmark`) and TF32 matrix products, as training/diffusion/step.py sets them |
| channels_last | UNet weights and inputs in NHWC |
| bf16 | bf16 autocast |
| compile | `torch.compile` of the UNet (default mode) |
| graphs | `torch.compile(mode="reduce-overhead")`: CUDA graphs with static shapes |

`old` is the training loop with none of the first six (the straightforward loop: host-side data, noise and loss),
kept as the baseline that every measure is timed against on the same machine; `new` is the loop of
training/train_cfg.py (all six). Sampling variants use device_rng (the generator handed to the pipeline), tuned,
channels_last, bf16, compile and graphs; `old` sampling is the pipeline called with a CPU generator.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, fields, replace

import torch
from diffusers import UNet2DModel
from diffusers.training_utils import EMAModel

from training.diffusion.step import EpochSampler, StepRandomness, diffusion_loss, to_model_input


@dataclass(frozen=True)
class Settings:
    device_data: bool = False
    device_rng: bool = False
    no_sync: bool = False
    ema_foreach: bool = False
    fused: bool = False
    tuned: bool = False
    channels_last: bool = False
    bf16: bool = False
    compile: bool = False
    graphs: bool = False


BASES = {
    "old": Settings(),
    "new": Settings(device_data=True, device_rng=True, no_sync=True, ema_foreach=True, fused=True, tuned=True),
}
# One measure switched on at a time, in this order: what each one buys on top of the previous ones.
TRAIN_ABLATION = [
    "old",
    "old+device_data",
    "old+device_data+device_rng",
    "old+device_data+device_rng+no_sync",
    "old+device_data+device_rng+no_sync+ema_foreach",
    "old+device_data+device_rng+no_sync+ema_foreach+fused",
    "new",
    "new+channels_last",
    "new+bf16",
    "new+bf16+channels_last",
    "new+compile",
    "new+graphs",
    "new+bf16+graphs",
]
SAMPLE_ABLATION = [
    "old",
    "new",
    "new+bf16",
    "new+channels_last",
    "new+bf16+channels_last",
    "new+graphs",
    "new+bf16+graphs",
]


def is_compiled(name: str) -> bool:
    """Whether the variant compiles the UNet (`compile` or `graphs`): minutes of compilation, and a toolchain."""
    settings = parse_variant(name)
    return settings.compile or settings.graphs


def parse_variant(name: str) -> Settings:
    base, *modifiers = name.split("+")
    if base not in BASES:
        raise ValueError(f"variant {name!r} must start with one of {sorted(BASES)}")
    known = {f.name for f in fields(Settings)}
    unknown = [m for m in modifiers if m not in known]
    if unknown:
        raise ValueError(f"variant {name!r}: unknown modifier(s) {unknown}; choose from {sorted(known)}")
    return replace(BASES[base], **dict.fromkeys(modifiers, True))


def apply_backend_flags(settings: Settings) -> None:
    """Process-wide cuDNN / TF32 switches: set for every variant, so that one variant's never leak into the next."""
    torch.backends.cudnn.benchmark = settings.tuned
    torch.backends.cuda.matmul.allow_tf32 = settings.tuned


def autocast(settings: Settings, device: torch.device):
    if not settings.bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def maybe_compile(module, settings: Settings):
    if settings.graphs:
        return torch.compile(module, mode="reduce-overhead")
    if settings.compile:
        return torch.compile(module)
    return module


class TrainLoop:
    """Optimizer steps as training/train_cfg.py takes them (clip, AdamW, EMA), without accelerate's wrapper."""

    def __init__(
        self,
        unet: UNet2DModel,
        noise_scheduler,
        null_class_id,
        images,
        labels,
        settings: Settings,
        device: torch.device,
        batch_size: int,
        learning_rate: float = 1e-3,
        label_dropout: float = 0.1,
        seed: int = 0,
    ):
        self.settings, self.device = settings, device
        apply_backend_flags(settings)
        self.unet = copy.deepcopy(unet).to(device).train()
        if settings.channels_last:
            self.unet = self.unet.to(memory_format=torch.channels_last)
        self.model = maybe_compile(self.unet, settings)
        self.noise_scheduler, self.null_class_id, self.label_dropout = noise_scheduler, null_class_id, label_dropout
        fused = settings.fused and device.type == "cuda"
        self.optimizer = torch.optim.AdamW(self.unet.parameters(), lr=learning_rate, fused=fused or None)
        self.ema = EMAModel(
            self.unet.parameters(), decay=0.999, use_ema_warmup=True, power=0.75, foreach=settings.ema_foreach
        )
        self.ema.to(device)
        data_device = device if settings.device_data else torch.device("cpu")
        self.images, self.labels = images.to(data_device), labels.to(data_device)
        self.sampler = EpochSampler(len(images), batch_size, 1, 0, seed, data_device)
        self.randomness = StepRandomness(seed, 0, device if settings.device_rng else "cpu")
        self.loss_sum, self.host_loss = torch.zeros((), device=device), 0.0

    def step(self, i: int) -> None:
        index = self.sampler.indices(i)
        clean = to_model_input(self.images[index].to(self.device), self.settings.channels_last)
        labels = self.labels[index].to(self.device)
        with autocast(self.settings, self.device):
            loss = diffusion_loss(
                self.model,
                self.noise_scheduler,
                clean,
                labels,
                self.randomness.for_micro_step(i),
                self.label_dropout,
                self.null_class_id,
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.step(self.unet.parameters())
        if self.settings.no_sync:
            self.loss_sum += loss.detach().float()
        else:
            self.host_loss += loss.item()

    def mean_loss(self, steps: int) -> float:
        return (self.loss_sum.item() if self.settings.no_sync else self.host_loss) / steps


def sampling_unet(unet: UNet2DModel, settings: Settings):
    """The UNet as a variant samples with it (a compiled wrapper, NHWC weights), leaving `unet` as it was."""
    apply_backend_flags(settings)
    if settings.channels_last:
        unet = copy.deepcopy(unet).to(memory_format=torch.channels_last)
    return maybe_compile(unet.eval(), settings)


def sampling_generator(settings: Settings, device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device if settings.device_rng else "cpu").manual_seed(seed)
