"""One training step of a DDPM (Ho et al., 2020, Alg. 1), written so that a GPU never waits for the host.

Exact resume: the randomness of micro-batch i (which images, which t, which noise, which labels are
dropped) is a pure function of (seed, process index, i). Resuming from `checkpoint-N` therefore replays
exactly what an uninterrupted run would have done, with no generator state to save.

Speed: the images live on the training device as uint8, a batch is an index into them, and noise, t and
label dropout are drawn on that device by a generator reseeded per micro-step: nothing is copied from the
host per step. The draws and their order are a contract (`diffusion_loss`): on the CPU they give the numbers of
the recorded reference run in tests/data, so a CPU run today trains the same model as the runs it documents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


class StepRandomness:
    """One generator on the training device, reseeded from (seed, process, micro-step) before each step.

    Reseeding is a host-side write of seed and offset (no device synchronisation), and reusing one
    generator avoids building a new CUDA generator object every step.
    """

    def __init__(self, seed: int, process_index: int, device: torch.device | str = "cpu"):
        self.seed, self.process_index = seed, process_index
        self.generator = torch.Generator(device=device)

    def for_micro_step(self, micro_step: int) -> torch.Generator:
        state = np.random.SeedSequence([self.seed, self.process_index, micro_step]).generate_state(2, dtype=np.uint32)
        return self.generator.manual_seed(int(state[0]) << 32 | int(state[1]))


def micro_step_generator(seed: int, process_index: int, micro_step: int, device="cpu") -> torch.Generator:
    """A fresh generator seeded by (seed, process, micro-step) alone (the benchmarks' host-RNG baseline)."""
    return StepRandomness(seed, process_index, device).for_micro_step(micro_step)


@dataclass
class EpochSampler:
    """Batches that walk a fresh permutation every epoch, split across processes.

    The permutation is drawn on the CPU (the same on every device, so resume and multi-process runs agree)
    and moved to `device` once per epoch; each batch is then a slice of it, with no host work per step.
    """

    num_examples: int
    batch_size: int
    num_processes: int
    process_index: int
    seed: int
    device: torch.device | str = "cpu"

    def __post_init__(self):
        self.batches_per_epoch = self.num_examples // (self.batch_size * self.num_processes)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{self.num_examples} training images cannot fill one batch of {self.batch_size} "
                f"on each of {self.num_processes} processes; lower --train_batch_size"
            )
        self._epoch, self._permutation = -1, None

    def indices(self, micro_step: int) -> torch.Tensor:
        epoch, batch = divmod(micro_step, self.batches_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            permutation = torch.randperm(self.num_examples, generator=generator)
            self._epoch, self._permutation = epoch, permutation.to(self.device)
        start = (batch * self.num_processes + self.process_index) * self.batch_size
        return self._permutation[start : start + self.batch_size]


def diffusion_loss(unet, noise_scheduler, clean, class_labels, generator, label_dropout=0.0, null_class_id=None):
    """MSE between the true and the predicted noise at a uniformly drawn t (DDPM Alg. 1).

    Draws happen on the generator's device (noise, then t, then the dropout mask: this order is part of
    the reproducibility contract) and move to the data's device only when the two differ (host RNG).
    With `label_dropout` > 0, that fraction of labels becomes `null_class_id`, which teaches the same
    network the unconditional model that classifier-free guidance needs.
    """
    batch, device, draw_on = clean.shape[0], clean.device, generator.device
    noise = torch.randn(clean.shape, generator=generator, device=draw_on).to(device)
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (batch,), generator=generator, device=draw_on
    ).to(device)
    if class_labels is not None and label_dropout > 0:
        dropped = torch.rand(batch, generator=generator, device=draw_on).to(device) < label_dropout
        class_labels = torch.where(dropped, null_class_id, class_labels)
    noisy = noise_scheduler.add_noise(clean, noise, timesteps)
    if clean.is_contiguous(memory_format=torch.channels_last) and clean.dim() == 4:
        noisy = noisy.contiguous(memory_format=torch.channels_last)
    noise_pred = unet(noisy, timesteps, class_labels=class_labels).sample
    return F.mse_loss(noise_pred.float(), noise.float())


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2, drawn by the step's generator on its device.

    Drawn before the loss's draws, so a run with flips is as exactly resumable as one without.
    """
    flip = torch.rand(len(images), generator=generator, device=generator.device).to(images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def to_model_input(images_u8: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] on the images' own device (the model's training range)."""
    clean = images_u8.float().div(127.5).sub(1.0)
    return clean.contiguous(memory_format=torch.channels_last) if channels_last else clean


def make_optimizer(parameters, args, device: torch.device) -> torch.optim.AdamW:
    """AdamW; on CUDA the fused kernel (one launch for all tensors instead of one per tensor group).

    On the CPU the default (foreach) implementation stays: the one of the reference run in tests/data, which
    CPU runs are checked against (tests/test_fast_training.py).
    """
    fused = device.type == "cuda"
    return torch.optim.AdamW(parameters, lr=args.learning_rate, weight_decay=args.adam_weight_decay, fused=fused)


def configure_device_speed() -> None:
    """Fixed 28x28/32x32 shapes: let cuDNN pick its fastest kernels once; TF32 for fp32 matrix products."""
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
