"""Seeds of the noise a sampler adds during its steps, kept apart from the seeds of the initial noises.

The commands draw each initial noise x_T from a small seeded generator (`image_seed`, `save_face_noises`, a
user's `torch.manual_seed(0)`). A stochastic step (DDPM, DDIM with eta > 0, LCM) draws fresh noise z from
another generator; seeded with the same number, that generator draws the very numbers of x_T, and the step
adds x_T to itself instead of independent noise: the image keeps noise it never loses. `step_noise_seed`
mixes the keys with a fixed tag through NumPy's SeedSequence into 63 bits, a stream that no small seed reaches.
"""

from __future__ import annotations

import numpy as np
import torch

STEP_NOISE_TAG = 0x5E9  # any constant: it only has to differ from what initial noises use (nothing)


def step_noise_seed(*keys: int) -> int:
    """A seed for the step noise of the image or batch named by `keys` (e.g. seed, digit, index)."""
    if not keys or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0 for k in keys):
        raise ValueError(f"step noise keys must be non-negative integers, got {keys!r}")
    state = np.random.SeedSequence([*(int(k) for k in keys), STEP_NOISE_TAG]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def step_noise_generator(*keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded with `step_noise_seed(*keys)` on `device`."""
    return torch.Generator(device).manual_seed(step_noise_seed(*keys))
