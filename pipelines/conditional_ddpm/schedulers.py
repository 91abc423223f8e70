"""The samplers of the conditional DDPM by name, each built from the trained DDPM schedule.

| name    | scheduler                        | default steps | why |
|---------|----------------------------------|---------------|-----|
| `ddpm`  | `DDPMScheduler`                  | 400 (all)     | the report's ancestral sampler |
| `ddim`  | `DDIMScheduler`                  | 50            | the course's deterministic sampler |
| `dpm`   | `DPMSolverMultistepScheduler`    | 10            | second-order solver: good digits in 6-10 steps |
| `unipc` | `UniPCMultistepScheduler`        | 10            | predictor-corrector, as fast as `dpm` |

The multistep solvers use "trailing" timestep spacing so that their first step starts from the last
trained timestep (pure noise); with "leading" spacing and 6 steps the first step would be t = 333 of 400.
DDPM and DDIM keep the course's "leading" spacing whatever the folder's scheduler says (the shipped folders
store DPM-Solver++, trailing), so that `--scheduler ddim` means the same 50 timesteps from every folder.
"""

from __future__ import annotations

import inspect

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    SchedulerMixin,
    UniPCMultistepScheduler,
)

from pipelines.conditional_ddpm.pipeline_conditional_ddpm import default_inference_steps

SCHEDULERS = {
    "ddpm": (DDPMScheduler, {"timestep_spacing": "leading"}),
    "ddim": (DDIMScheduler, {"timestep_spacing": "leading"}),
    "dpm": (DPMSolverMultistepScheduler, {"timestep_spacing": "trailing"}),
    "unipc": (UniPCMultistepScheduler, {"timestep_spacing": "trailing"}),
}


def make_scheduler(name: str, config) -> SchedulerMixin:
    """The sampler `name` on the noise schedule of `config` (a trained pipeline's scheduler config)."""
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {name!r}")
    scheduler_class, overrides = SCHEDULERS[name]
    # Only the keys this class takes: diffusers keeps the others in the new config, where they would claim a
    # DDIM scheduler has a `solver_order` and be saved with it.
    accepted = inspect.signature(scheduler_class.__init__).parameters
    return scheduler_class.from_config({k: v for k, v in config.items() if k in accepted}, **overrides)


def default_steps(name: str, num_train_timesteps: int) -> int:
    """Inference steps used when none are given, as the pipeline chooses them for the scheduler `name`."""
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {name!r}")
    return default_inference_steps(SCHEDULERS[name][0](num_train_timesteps=num_train_timesteps))
