"""Spherical and linear interpolation between two initial noises.

Gaussian noise in d dimensions lies near the sphere of radius sqrt(d). ``lerp`` cuts through the
inside of that sphere (at alpha = 0.5 the norm of two independent noises drops by about 1/sqrt(2)),
so a DDIM sampler gets noise it never saw in training; ``slerp`` walks along the sphere instead
(Shoemake 1985; used for DDIM latents by Song et al. 2021, sec. 5.3):

    theta    = arccos(<x0, x1> / (|x0| |x1|))
    slerp(a) = sin((1 - a) theta) / sin(theta) * x0 + sin(a theta) / sin(theta) * x1
    lerp(a)  = (1 - a) * x0 + a * x1

Both take noises of any (equal) shape and a float or a 1-D batch of alphas. With a batch of k alphas
the result has a new leading dimension of size k. The coefficients are computed in float64 and the
result has the dtype of the inputs.
"""

from collections.abc import Sequence

import torch

Alpha = float | Sequence[float] | torch.Tensor

# Below this sin(theta) the slerp weights are 0/0; the arc is then indistinguishable from the chord.
_PARALLEL_SIN_THETA = 1e-6


def _check_pair(x0: torch.Tensor, x1: torch.Tensor) -> None:
    if not (isinstance(x0, torch.Tensor) and isinstance(x1, torch.Tensor)):
        raise ValueError(f"x0 and x1 must be tensors, got {type(x0).__name__} and {type(x1).__name__}")
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    if not (x0.is_floating_point() and x1.is_floating_point()):
        raise ValueError(f"x0 and x1 must be floating point, got {x0.dtype} and {x1.dtype}")


def _as_alphas(alpha: Alpha, device: torch.device) -> tuple[torch.Tensor, bool]:
    """Returns alphas as a float64 1-D tensor and whether the caller passed a batch."""
    alphas = torch.as_tensor(alpha, dtype=torch.float64)
    if alphas.ndim > 1:
        raise ValueError(f"alpha must be a float or a 1-D batch, got shape {tuple(alphas.shape)}")
    if not torch.isfinite(alphas).all():
        raise ValueError("alpha must be finite")
    return alphas.reshape(-1).to(device), alphas.ndim == 1


def _combine(w0: torch.Tensor, w1: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, batched: bool) -> torch.Tensor:
    shape = (-1,) + (1,) * x0.ndim
    out = w0.reshape(shape) * x0.double() + w1.reshape(shape) * x1.double()
    out = out.to(x0.dtype)
    return out if batched else out[0]


def lerp(x0: torch.Tensor, x1: torch.Tensor, alpha: Alpha) -> torch.Tensor:
    """Linear interpolation (1 - alpha) * x0 + alpha * x1 for one alpha or a 1-D batch of them."""
    _check_pair(x0, x1)
    alphas, batched = _as_alphas(alpha, x0.device)
    return _combine(1.0 - alphas, alphas, x0, x1, batched)


def slerp(x0: torch.Tensor, x1: torch.Tensor, alpha: Alpha) -> torch.Tensor:
    """Spherical interpolation between x0 and x1 (Shoemake 1985); lerp when they are (nearly) parallel.

    Raises:
        ValueError: if a noise is zero, not finite, or x0 and x1 point in opposite directions
            (every great circle through them is then a valid path, so the answer is undefined).
    """
    _check_pair(x0, x1)
    alphas, batched = _as_alphas(alpha, x0.device)
    v0, v1 = x0.double().flatten(), x1.double().flatten()
    if not (torch.isfinite(v0).all() and torch.isfinite(v1).all()):
        raise ValueError("x0 and x1 must be finite")
    norm0, norm1 = v0.norm(), v1.norm()
    if norm0 == 0 or norm1 == 0:
        raise ValueError("slerp is undefined for a zero vector")
    cos_theta = (torch.dot(v0, v1) / (norm0 * norm1)).clamp(-1.0, 1.0)
    theta = torch.arccos(cos_theta)
    sin_theta = torch.sin(theta)
    if sin_theta < _PARALLEL_SIN_THETA:
        if cos_theta < 0:
            raise ValueError("slerp is undefined for opposite vectors (x1 = -c * x0)")
        return _combine(1.0 - alphas, alphas, x0, x1, batched)
    w0 = torch.sin((1.0 - alphas) * theta) / sin_theta
    w1 = torch.sin(alphas * theta) / sin_theta
    return _combine(w0, w1, x0, x1, batched)
