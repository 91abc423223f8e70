"""The teacher's sampling paths, the student's training data, written in shards that a later run reuses.

A path starts from a standard normal x_T and follows the teacher's guided probability-flow ODE (DPM-Solver++ on
its trained schedule, `solver_steps` steps at guidance w); it records the state the solver holds before each
step, x_{t_0} = x_T, x_{t_1}, ..., and the end point x_0 (clamped to the image range [-1, 1], as the pipeline
shows it). The student learns to map any recorded state (x_{t_i}, t_i, digit) to that end point, which is what
a consistency model does (Song et al., 2023) with the teacher's own trajectories as targets (Luhman & Luhman,
2021, extended from t_0 to every solver time).

Each shard is a safetensors file of `shard_size` paths with a fixed digit order (equal counts of 0-9) and noise
drawn from (seed, shard index) alone, so shard k is the same whether it is made first, last or after a restart;
a shard is written under a temporary name and renamed once whole, and its metadata records how it was made so
that a shard of other settings is refused instead of mixed in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from adapters.folders import write_file_atomically
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import NUM_DIGITS, ConditionalDDPMPipeline
from pipelines.conditional_ddpm.schedulers import make_scheduler


@dataclass(frozen=True)
class PathSettings:
    """What makes a set of teacher paths; recorded in every shard."""

    teacher: str  # the teacher folder's weights file SHA-256 (where the paths come from)
    guidance: float  # w
    solver_steps: int  # DPM-Solver++ steps; their timesteps are the student's
    shard_size: int
    seed: int


def shard_name(index: int) -> str:
    return f"paths-{index:04d}.safetensors"


def shard_labels(shard_size: int) -> torch.Tensor:
    """Digits 0-9 in equal numbers, digit-major (the pipeline's order)."""
    if shard_size % NUM_DIGITS:
        raise ValueError(f"--shard_size must be a multiple of {NUM_DIGITS}, got {shard_size}")
    return torch.arange(NUM_DIGITS).repeat_interleave(shard_size // NUM_DIGITS)


def shard_noise(settings: PathSettings, index: int, shape: tuple[int, ...]) -> torch.Tensor:
    seed = np.random.SeedSequence([settings.seed, index]).generate_state(1, dtype=np.uint32)[0]
    return torch.randn((settings.shard_size, *shape), generator=torch.Generator().manual_seed(int(seed)))


def teacher_paths(
    teacher: ConditionalDDPMPipeline, noise: torch.Tensor, labels: torch.Tensor, settings: PathSettings
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(states [N, steps, C, H, W], their timesteps [steps], end points [N, C, H, W]) of the teacher's solver."""
    teacher.scheduler = make_scheduler("dpm", teacher.scheduler.config)
    states = []

    def record(pipe, step, timestep, tensors):
        if step + 1 < settings.solver_steps:  # the state before the next step; the last one is the end point
            states.append(tensors["latents"].clone())
        return {}

    output = teacher(
        digit=labels.tolist(),
        num_images_per_digit=1,
        guidance=settings.guidance,
        num_inference_steps=settings.solver_steps,
        latents=noise,
        output_type="latent",
        callback_on_step_end=record,
    )
    timesteps = teacher.scheduler.timesteps.clone()
    all_states = torch.stack([noise, *states], dim=1)
    return all_states, timesteps, output.images.clamp(-1, 1)


def make_shard(teacher: ConditionalDDPMPipeline, settings: PathSettings, index: int, batch_size: int) -> dict:
    """The tensors of shard `index`: states, timesteps, labels, end points (float32)."""
    shape = teacher.sample_shape()
    noise, labels = shard_noise(settings, index, shape), shard_labels(settings.shard_size)
    parts = []
    for start in range(0, settings.shard_size, batch_size):
        part = slice(start, start + batch_size)
        with torch.no_grad():
            parts.append(teacher_paths(teacher, noise[part], labels[part], settings))
    return {
        "states": torch.cat([p[0] for p in parts]),
        "timesteps": parts[0][1],
        "labels": labels,
        "end_points": torch.cat([p[2] for p in parts]),
    }


def read_settings(path: Path) -> PathSettings:
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "settings" not in metadata:
        raise ValueError(f"{path} is not a shard of teacher paths (no settings in its metadata)")
    return PathSettings(**json.loads(metadata["settings"]))


def write_paths(
    teacher: ConditionalDDPMPipeline, settings: PathSettings, folder: Path, num_shards: int, batch_size: int
) -> list[Path]:
    """Shards 0 .. num_shards - 1 in `folder`, making only those that are missing; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / shard_name(i) for i in range(num_shards)]
    for path in paths:
        if path.exists() and read_settings(path) != settings:
            raise ValueError(
                f"{path} holds teacher paths of other settings ({read_settings(path)}); this run makes {settings}. "
                "Use another --output_dir or remove that folder"
            )
    missing = [i for i, path in enumerate(paths) if not path.exists()]
    metadata = {"settings": json.dumps(asdict(settings))}
    for i in tqdm(missing, desc="teacher paths (shards)"):
        tensors = make_shard(teacher, settings, i, batch_size)
        write_file_atomically(paths[i], lambda tmp, t=tensors: save_file(t, str(tmp), metadata=metadata))
    return paths
