"""slerp and lerp between initial noises."""

import math

import pytest
import torch

from pipelines.ddim_from_noise.interpolation import lerp, slerp


def noises(shape=(1, 3, 16, 16), seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


@pytest.mark.parametrize("interpolate", [slerp, lerp])
def test_endpoints_are_the_inputs(interpolate):
    x0, x1 = noises()
    torch.testing.assert_close(interpolate(x0, x1, 0.0), x0)
    torch.testing.assert_close(interpolate(x0, x1, 1.0), x1)


@pytest.mark.parametrize("interpolate", [slerp, lerp])
def test_symmetric_in_the_swap_of_ends(interpolate):
    x0, x1 = noises((3, 5, 7))
    for alpha in (0.1, 0.37, 0.5, 0.9):
        torch.testing.assert_close(interpolate(x0, x1, alpha), interpolate(x1, x0, 1 - alpha))


def test_batch_of_alphas_adds_a_leading_dimension_and_keeps_dtype():
    x0, x1 = noises((3, 4, 4))
    alphas = torch.linspace(0, 1, 11)
    path = slerp(x0, x1, alphas)
    assert path.shape == (11, 3, 4, 4) and path.dtype == torch.float32
    torch.testing.assert_close(path[3], slerp(x0, x1, alphas[3].item()))
    assert lerp(x0, x1, [0.0, 0.5]).shape == (2, 3, 4, 4)
    assert slerp(x0.double(), x1.double(), 0.5).dtype == torch.float64


def test_slerp_matches_the_formula():
    x0, x1 = noises((2, 8))
    theta = torch.arccos(
        torch.dot(x0.flatten().double(), x1.flatten().double()) / (x0.double().norm() * x1.double().norm())
    )
    alpha = 0.3
    expected = (torch.sin((1 - alpha) * theta) * x0.double() + torch.sin(alpha * theta) * x1.double()) / torch.sin(
        theta
    )
    torch.testing.assert_close(slerp(x0, x1, alpha), expected.float())


def test_slerp_keeps_the_norm_of_equal_norm_noises_and_lerp_shrinks_it():
    x0, x1 = noises((3, 64, 64))
    x1 = x1 * x0.norm() / x1.norm()
    norms = slerp(x0, x1, torch.linspace(0, 1, 11)).flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, x0.norm().item()), rtol=1e-5, atol=0)
    # two independent Gaussian noises are nearly orthogonal: the midpoint of the chord has norm |x0| / sqrt(2)
    assert lerp(x0, x1, 0.5).norm().item() == pytest.approx(x0.norm().item() / math.sqrt(2), rel=0.02)


def test_slerp_of_parallel_noises_falls_back_to_lerp():
    x0, _ = noises((4, 4))
    for x1 in (2 * x0, x0.clone()):
        out = slerp(x0, x1, torch.tensor([0.0, 0.25, 1.0]))
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, lerp(x0, x1, torch.tensor([0.0, 0.25, 1.0])))


def test_bad_inputs_are_clear_errors():
    x0, x1 = noises((4, 4))
    with pytest.raises(ValueError, match="opposite"):
        slerp(x0, -x0, 0.5)
    with pytest.raises(ValueError, match="same shape"):
        slerp(x0, x1[:2], 0.5)
    with pytest.raises(ValueError, match="zero vector"):
        slerp(x0, torch.zeros_like(x0), 0.5)
    with pytest.raises(ValueError, match="floating point"):
        lerp(x0.long(), x1.long(), 0.5)
    with pytest.raises(ValueError, match="1-D"):
        lerp(x0, x1, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="finite"):
        slerp(x0, x1, float("nan"))
