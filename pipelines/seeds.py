"""Seeds of the noise a sampler adds during its steps, one stream per image or batch, for the commands.

The commands draw each initial noise x_T from a small seeded generator (`image_seed`, `save_face_noises`) and give
the pipeline a step generator of its own, so that an image's step noise depends on its keys (seed, digit, index)
and not on the batch it lands in. The pipelines need no such care: like diffusers' they draw x_T from the
generator first (setting the draw aside when x_T is given), so even a generator seeded like the initial noise gives
fresh step noise. `step_noise_seed` mixes the keys with a fixed tag through NumPy's SeedSequence into 63 bits.
"""

from __future__ import annotations

import numpy as np
import torch

STEP_NOISE_TAG = 0x5E9  # any constant: it keeps these streams apart from a generator seeded with the keys alone


def step_noise_seed(*keys: int) -> int:
    """A seed for the step noise of the image or batch named by `keys` (e.g. seed, digit, index)."""
    if not keys or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0 for k in keys):
        raise ValueError(f"step noise keys must be non-negative integers, got {keys!r}")
    state = np.random.SeedSequence([*(int(k) for k in keys), STEP_NOISE_TAG]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def step_noise_generator(*keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded with `step_noise_seed(*keys)` on `device`."""
    return torch.Generator(device).manual_seed(step_noise_seed(*keys))
