"""Pipelines and command-line entry points.

Imports are lazy so that `python -m pipelines.ddim_from_noise` does not pay for (or fail on) the
imports of unrelated pipelines.
"""

import importlib

_EXPORTS = {
    "ConditionalDDPMPipeline": "pipelines.conditional_ddpm.pipeline_conditional_ddpm",
    "ConditionalDDPMPipelineOutput": "pipelines.conditional_ddpm.pipeline_conditional_ddpm",
    "make_scheduler": "pipelines.conditional_ddpm.schedulers",
    "DDIMFromNoisePipeline": "pipelines.ddim_from_noise.pipeline_ddim_from_noise",
    "ForeignUNetAdapter": "pipelines.ddim_from_noise.foreign_unet",
    "ddim_scheduler": "pipelines.ddim_from_noise.pipeline_ddim_from_noise",
    "slerp": "pipelines.ddim_from_noise.interpolation",
    "lerp": "pipelines.ddim_from_noise.interpolation",
    "DANNModel": "pipelines.dann.modeling_dann",
    "DANNConfig": "pipelines.dann.modeling_dann",
    "GradientReversal": "pipelines.dann.modeling_dann",
    "dann_lambda": "pipelines.dann.modeling_dann",
    "DigitClassifier": "pipelines.digit_classifier.modeling_digit_classifier",
    "DigitClassifierForImageClassification": "pipelines.digit_classifier.modeling_digit_classifier",
    "DigitClassifierConfig": "pipelines.digit_classifier.configuration_digit_classifier",
    "DigitImageProcessor": "pipelines.digit_classifier.image_processing_digits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
