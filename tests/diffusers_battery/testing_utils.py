# ruff: noqa: E501, UP035
"""diffusers' test helpers that `pipelines_common.py` (its `PipelineTesterMixin`) imports, and nothing else.

Origin: https://github.com/huggingface/diffusers, file `tests/testing_utils.py` at tag v0.40.0
(commit d035dcd7cc7c88e0a154609b62887d50bba9fdc2; unchanged on `main` up to 58eb52c0, 2026-08-23, the newest
snapshot available here: no v0.42 tag was). Copyright The HuggingFace Team, licensed under the Apache License,
Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0), the licence of this project too.

This is diffusers' code, not the project's. Changes: trimmed to `torch_device`, `numpy_cosine_similarity_distance`,
`require_torch_accelerator`, `require_accelerator`, `require_accelerate_version_greater`, `CaptureLogger` and
`backend_empty_cache` (with the dispatch table it reads, `BACKEND_EMPTY_CACHE` only); imports reduced to what these
use and sorted; `ruff format`. The kept definitions are otherwise as diffusers wrote them.
"""

import importlib
import importlib.metadata
import logging
import os
from io import StringIO
from typing import Callable

import numpy as np
import pytest
from diffusers.utils.import_utils import is_accelerate_available, is_torch_available, is_torch_neuronx_available
from diffusers.utils.logging import get_logger
from numpy.linalg import norm
from packaging import version

logger = get_logger(__name__)

if is_torch_available():
    import torch

    # Set a backend environment variable for any extra module import required for a custom accelerator
    if "DIFFUSERS_TEST_BACKEND" in os.environ:
        backend = os.environ["DIFFUSERS_TEST_BACKEND"]
        try:
            _ = importlib.import_module(backend)
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(
                f"Failed to import `DIFFUSERS_TEST_BACKEND` '{backend}'! This should be the name of an installed module \
                    to enable a specified backend.):\n{e}"
            ) from e

    if "DIFFUSERS_TEST_DEVICE" in os.environ:
        torch_device = os.environ["DIFFUSERS_TEST_DEVICE"]
        try:
            # try creating device to see if provided device is valid
            _ = torch.device(torch_device)
        except RuntimeError as e:
            raise RuntimeError(
                f"Unknown testing device specified by environment variable `DIFFUSERS_TEST_DEVICE`: {torch_device}"
            ) from e
        logger.info(f"torch_device overrode to {torch_device}")
    else:
        if torch.cuda.is_available():
            torch_device = "cuda"
        elif torch.xpu.is_available():
            torch_device = "xpu"
        elif is_torch_neuronx_available() and hasattr(torch, "neuron") and torch.neuron.is_available():
            torch_device = torch.neuron.current_device()
        else:
            torch_device = "cpu"
        is_torch_higher_equal_than_1_12 = version.parse(version.parse(torch.__version__).base_version) >= version.parse(
            "1.12"
        )

        if is_torch_higher_equal_than_1_12:
            # Some builds of torch 1.12 don't have the mps backend registered. See #892 for more details
            mps_backend_registered = hasattr(torch.backends, "mps")
            torch_device = "mps" if (mps_backend_registered and torch.backends.mps.is_available()) else torch_device


def numpy_cosine_similarity_distance(a, b):
    similarity = np.dot(a, b) / (norm(a) * norm(b))
    distance = 1.0 - similarity.mean()

    return distance


# These decorators are for accelerator-specific behaviours that are not GPU-specific
def require_torch_accelerator(test_case):
    """Decorator marking a test that requires an accelerator backend and PyTorch."""
    return pytest.mark.skipif(torch_device == "cpu", reason="test requires accelerator+PyTorch")(test_case)


def require_accelerator(test_case):
    """
    Decorator marking a test that requires a hardware accelerator backend. These tests are skipped when there are no
    hardware accelerator available.
    """
    return pytest.mark.skipif(torch_device == "cpu", reason="test requires a hardware accelerator")(test_case)


def require_accelerate_version_greater(accelerate_version):
    def decorator(test_case):
        correct_accelerate_version = is_accelerate_available() and version.parse(
            version.parse(importlib.metadata.version("accelerate")).base_version
        ) > version.parse(accelerate_version)
        return pytest.mark.skipif(
            not correct_accelerate_version,
            reason=f"Test requires accelerate with the version greater than {accelerate_version}.",
        )(test_case)

    return decorator


class CaptureLogger:
    """
    Args:
    Context manager to capture `logging` streams
        logger: 'logging` logger object
    Returns:
        The captured output is available via `self.out`
    Example:
    ```python
    >>> from diffusers import logging
    >>> from diffusers.utils.testing_utils import CaptureLogger

    >>> msg = "Testing 1, 2, 3"
    >>> logging.set_verbosity_info()
    >>> logger = logging.get_logger("diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion.py")
    >>> with CaptureLogger(logger) as cl:
    ...     logger.info(msg)
    >>> assert cl.out, msg + "\n"
    ```
    """

    def __init__(self, logger):
        self.logger = logger
        self.io = StringIO()
        self.sh = logging.StreamHandler(self.io)
        self.out = ""

    def __enter__(self):
        self.logger.addHandler(self.sh)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.sh)
        self.out = self.io.getvalue()

    def __repr__(self):
        return f"captured: {self.out}\n"


# Guard these lookups for when Torch is not used - alternative accelerator support is for PyTorch
if is_torch_available():
    # Neuron device key: torch.neuron.current_device() returns an int (e.g. 0).
    # We capture it once at import time if torch_neuronx is available so we can add it
    # to all dispatch tables using the same key that torch_device is set to.
    _neuron_device = (
        torch.neuron.current_device()
        if (is_torch_neuronx_available() and hasattr(torch, "neuron") and torch.neuron.is_available())
        else None
    )

    # Function definitions
    BACKEND_EMPTY_CACHE = {
        "cuda": torch.cuda.empty_cache,
        "xpu": torch.xpu.empty_cache,
        "cpu": None,
        "mps": torch.mps.empty_cache,
        "default": None,
    }
    if _neuron_device is not None:
        BACKEND_EMPTY_CACHE[_neuron_device] = None


# This dispatches a defined function according to the accelerator from the function definitions.
def _device_agnostic_dispatch(device: str, dispatch_table: dict[str, Callable], *args, **kwargs):
    fn = dispatch_table[device] if device in dispatch_table else dispatch_table["default"]

    # Some device agnostic functions return values. Need to guard against 'None' instead at
    # user level
    if not callable(fn):
        return fn

    return fn(*args, **kwargs)


def backend_empty_cache(device: str):
    return _device_agnostic_dispatch(device, BACKEND_EMPTY_CACHE)
