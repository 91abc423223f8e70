"""Data adapters: every digit source as a `datasets.Dataset`, and the course's DDIM face inputs."""

from adapters.digit_sources import DigitSourceError
from adapters.digits import (
    DIGIT_DATASETS,
    HubUnavailableError,
    decode_digits,
    digit_transform,
    embedded_path,
    load_digits,
    to_model_range,
    to_uint8,
)

__all__ = [
    "DIGIT_DATASETS",
    "DigitSourceError",
    "HubUnavailableError",
    "decode_digits",
    "digit_transform",
    "embedded_path",
    "load_digits",
    "to_model_range",
    "to_uint8",
]
