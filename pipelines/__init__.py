"""Pipelines and command-line entry points.

Imports are lazy so that `python -m pipelines.ddim` does not pay for (or fail on) the
imports of unrelated pipelines.
"""

import importlib

_EXPORTS = {
    "ConditionalDDPMPipeline": "pipelines.pipeline_conditional_ddpm",
    "ConditionalDDPMPipelineOutput": "pipelines.pipeline_conditional_ddpm",
    "DDIMFromNoisePipeline": "pipelines.pipeline_ddim_from_noise",
    "ForeignUNetAdapter": "pipelines.foreign_unet",
    "ddim_scheduler": "pipelines.pipeline_ddim_from_noise",
    "slerp": "pipelines.interpolation",
    "lerp": "pipelines.interpolation",
    "DANNModel": "pipelines.dann_models",
    "DANNConfig": "pipelines.dann_models",
    "GradientReversal": "pipelines.dann_models",
    "dann_lambda": "pipelines.dann_models",
    "DigitClassifier": "pipelines.digit_classifier",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
