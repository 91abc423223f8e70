"""The samplers of the conditional DDPM by name, each built from the trained DDPM schedule.

| name    | scheduler                        | default steps | why |
|---------|----------------------------------|---------------|-----|
| `ddpm`  | `DDPMScheduler`                  | 400 (all)     | the report's ancestral sampler |
| `ddim`  | `DDIMScheduler`                  | 50            | the course's deterministic sampler |
| `dpm`   | `DPMSolverMultistepScheduler`    | 10            | second-order solver: good digits in 6-10 steps |
| `unipc` | `UniPCMultistepScheduler`        | 10            | predictor-corrector, as fast as `dpm` |

The multistep solvers use "trailing" timestep spacing so that their first step starts from the last
trained timestep (pure noise); with "leading" spacing and 6 steps the first step would be t = 333 of 400.
"""

from __future__ import annotations

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    SchedulerMixin,
    UniPCMultistepScheduler,
)

SCHEDULERS = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpm": (DPMSolverMultistepScheduler, {"timestep_spacing": "trailing"}),
    "unipc": (UniPCMultistepScheduler, {"timestep_spacing": "trailing"}),
}
_DEFAULT_STEPS = {"ddim": 50, "dpm": 10, "unipc": 10}


def make_scheduler(name: str, config) -> SchedulerMixin:
    """The sampler `name` on the noise schedule of `config` (a trained pipeline's scheduler config)."""
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {name!r}")
    scheduler_class, overrides = SCHEDULERS[name]
    return scheduler_class.from_config(config, **overrides)


def default_steps(name: str, num_train_timesteps: int) -> int:
    """Inference steps used when none are given: every trained step for `ddpm`, a few for the others."""
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {name!r}")
    return _DEFAULT_STEPS.get(name, num_train_timesteps)
