"""Class-conditional DDPM with classifier-free guidance.

The pipeline, its samplers, the course-output command (`python -m pipelines.conditional_ddpm`) and the
report's figures (`python -m pipelines.conditional_ddpm.figures`).
"""

from pipelines.conditional_ddpm.pipeline_conditional_ddpm import (
    NUM_DIGITS,
    ConditionalDDPMPipeline,
    ConditionalDDPMPipelineOutput,
)
from pipelines.conditional_ddpm.schedulers import SCHEDULERS, default_steps, make_scheduler

__all__ = [
    "NUM_DIGITS",
    "SCHEDULERS",
    "ConditionalDDPMPipeline",
    "ConditionalDDPMPipelineOutput",
    "default_steps",
    "make_scheduler",
]
