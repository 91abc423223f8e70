"""DDIM from given initial noises: the pipeline with the course's presets, slerp/lerp, an adapter for
`forward(x, t)` UNets, the course-output command (`python -m pipelines.ddim_from_noise`) and the figures."""

from pipelines.ddim_from_noise.foreign_unet import ForeignUNetAdapter
from pipelines.ddim_from_noise.interpolation import lerp, slerp
from pipelines.ddim_from_noise.pipeline_ddim_from_noise import PRESETS, DDIMFromNoisePipeline, ddim_scheduler

__all__ = ["PRESETS", "DDIMFromNoisePipeline", "ForeignUNetAdapter", "ddim_scheduler", "lerp", "slerp"]
