"""DANNModel, the gradient reversal layer and the lambda schedule."""

import json
import math

import pytest
import torch

from pipelines.dann.modeling_dann import DANNConfig, DANNModel, GradientReversal, dann_lambda


@pytest.mark.parametrize("coeff", [0.0, 0.5, 2.0])
def test_gradient_reversal_is_identity_forward_and_scaled_negation_backward(coeff):
    torch.manual_seed(0)
    x = torch.randn(4, 3, requires_grad=True)
    upstream = torch.randn(4, 3)
    y = GradientReversal()(x, coeff)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.allclose(x.grad, -coeff * upstream)


def test_gradient_reversal_default_coeff_is_used_when_none_given():
    x = torch.ones(2, requires_grad=True)
    GradientReversal(coeff=3.0)(x).sum().backward()
    assert torch.equal(x.grad, torch.full((2,), -3.0))


def test_lambda_schedule_follows_ganin_formula():
    assert dann_lambda(0.0) == 0.0
    for p in (0.1, 0.25, 0.5, 1.0):
        assert dann_lambda(p) == pytest.approx(2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)
    values = [dann_lambda(p / 10) for p in range(11)]
    assert values == sorted(values) and values[-1] < 1.0
    assert dann_lambda(0.3, gamma=5.0, max_value=0.5) == pytest.approx(0.5 * (2.0 / (1.0 + math.exp(-1.5)) - 1.0))


@pytest.mark.parametrize("progress", [-0.1, 1.5])
def test_lambda_schedule_rejects_progress_outside_unit_interval(progress):
    with pytest.raises(ValueError, match="progress"):
        dann_lambda(progress)


@pytest.mark.parametrize(
    "architecture, normalization", [("report", "grey"), ("improved", "grey"), ("improved", "per_channel")]
)
def test_forward_shapes(architecture, normalization):
    torch.manual_seed(0)
    model = DANNModel(DANNConfig(architecture=architecture, input_normalization=normalization)).eval()
    x = torch.rand(5, 3, 28, 28) * 2 - 1
    out = model(x)
    assert out.logits.shape == (5, 10) and out.features.shape == (5, 128) and out.domain_logits is None
    assert model(x, grl_coeff=0.3).domain_logits.shape == (5,)


def test_domain_gradient_reaches_features_reversed():
    """The domain loss pushes the feature extractor against the domain classifier."""
    torch.manual_seed(0)
    model = DANNModel(DANNConfig(architecture="report")).eval()
    x = torch.rand(4, 3, 28, 28) * 2 - 1
    features = model.feature_extractor(x).detach().requires_grad_(True)
    model.domain_classifier(model.gradient_reversal(features, 0.7)).sum().backward()
    reversed_grad = features.grad.clone()
    features.grad = None
    model.domain_classifier(features).sum().backward()
    assert torch.allclose(reversed_grad, -0.7 * features.grad, atol=1e-6)


def test_bad_config_and_input_are_rejected():
    with pytest.raises(ValueError, match="architecture"):
        DANNConfig(architecture="resnet")
    with pytest.raises(ValueError, match="input_normalization"):
        DANNConfig(input_normalization="lab")
    with pytest.raises(ValueError, match="28x28"):
        DANNConfig(image_size=32)
    with pytest.raises(ValueError, match="shape"):
        DANNModel(DANNConfig())(torch.zeros(2, 1, 28, 28))


@pytest.mark.parametrize("normalization", ["grey", "per_channel"])
def test_improved_model_ignores_brightness_and_contrast(normalization):
    """Per-image standardisation inside the model: an affine change of the pixel values changes nothing."""
    torch.manual_seed(0)
    model = DANNModel(DANNConfig(architecture="improved", input_normalization=normalization)).eval()
    x = torch.rand(3, 3, 28, 28) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(model(x).logits, model(0.5 * x + 0.2).logits, atol=1e-4)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = DANNModel(DANNConfig(architecture="report", lambda_gamma=5.0)).eval()
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    assert json.loads((tmp_path / "config.json").read_text())["architecture"] == "report"
    loaded = DANNModel.from_pretrained(tmp_path).eval()
    assert loaded.config == model.config
    x = torch.rand(2, 3, 28, 28) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)
