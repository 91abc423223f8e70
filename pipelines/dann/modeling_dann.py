"""Domain-Adversarial Neural Network (Ganin et al., 2016) as one Hub-ready model.

    image --feature_extractor--> f (128-d) --label_predictor-------------------> class logits
                                           \\--GradientReversal(lambda_p)--domain_classifier--> domain logit

`DANNModel.save_pretrained(dir)` writes `config.json` + `model.safetensors`; `from_pretrained(dir)` reads
them back (huggingface_hub's `PyTorchModelHubMixin`, so Hub ids work too).

Two feature extractors:
- `architecture="report"`: the course report's network, RGB in [-1, 1] straight in (like-for-like row).
- `architecture="improved"`: the image is turned grey and standardised per image inside the model (this
  removes most of MNIST-M's colour/background shift and makes the prediction command's preprocessing part
  of the checkpoint), then a small LeNet-style stack with global average pooling.
"""

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
from huggingface_hub import PyTorchModelHubMixin

ARCHITECTURES = ("report", "improved")
INPUT_NORMALIZATIONS = ("grey", "per_channel")

# ITU-R BT.601 luma weights, the same as PIL's convert("L").
_LUMA = (0.299, 0.587, 0.114)


def dann_lambda(progress: float, gamma: float = 10.0, max_value: float = 1.0) -> float:
    """Ganin et al.'s schedule  lambda_p = max_value * (2 / (1 + exp(-gamma * p)) - 1),  p in [0, 1].

    Starts at 0 (the domain classifier's noisy early gradients do not reach the features) and rises
    smoothly to `max_value`.
    """
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"training progress must be in [0, 1], got {progress}")
    return max_value * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


class _GradientReversalFunction(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by -coeff."""

    @staticmethod
    def forward(ctx, x, coeff):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return -ctx.coeff * grad_output, None


class GradientReversal(nn.Module):
    """Gradient reversal layer R_lambda:  R(x) = x,  dR/dx = -lambda * I.

    Args:
        coeff: the lambda used when `forward` is called without one (the training loop passes
            `dann_lambda(p)` every step).
    """

    def __init__(self, coeff: float = 1.0):
        super().__init__()
        self.coeff = coeff

    def forward(self, x: torch.Tensor, coeff: float | None = None) -> torch.Tensor:
        return _GradientReversalFunction.apply(x, self.coeff if coeff is None else float(coeff))


@dataclass
class DANNConfig:
    """Everything needed to rebuild a `DANNModel`; stored as `config.json` beside the weights."""

    architecture: str = "improved"
    # improved extractor only: "grey" (luma, then per-image standardisation: colour-free) or "per_channel"
    # (each RGB channel standardised per image: keeps colour contrast, which MNIST-M digits may need when
    # digit and background have the same luminance).
    input_normalization: str = "grey"
    num_classes: int = 10
    image_size: int = 28
    feature_dim: int = 128
    head_hidden_dims: list[int] = field(default_factory=lambda: [1024, 256])
    dropout: float = 0.5
    # lambda_p = lambda_max * (2 / (1 + exp(-lambda_gamma * p)) - 1)
    lambda_gamma: float = 10.0
    lambda_max: float = 1.0
    # softmax temperature for calibrated confidences, softmax(logits / temperature); the class is unchanged.
    # Fitted after training on SOURCE validation images (temperature scaling by NLL); 1.0 = not fitted.
    temperature: float = 1.0

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; expected one of {ARCHITECTURES}")
        if self.input_normalization not in INPUT_NORMALIZATIONS:
            raise ValueError(f"unknown input_normalization {self.input_normalization!r}; "
                             f"expected one of {INPUT_NORMALIZATIONS}")
        if self.image_size != 28:
            raise ValueError(f"the DANN networks are built for 28x28 inputs, got image_size={self.image_size}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        self.head_hidden_dims = list(self.head_hidden_dims)

    def to_dict(self) -> dict:
        return asdict(self)


class GreyStandardize(nn.Module):
    """RGB in [-1, 1] -> one grey channel with zero mean and unit variance per image."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1), persistent=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = (x * self.luma.to(x.dtype)).sum(dim=1, keepdim=True)
        mean = grey.mean(dim=(2, 3), keepdim=True)
        std = grey.std(dim=(2, 3), keepdim=True)
        return (grey - mean) / (std + self.eps)


class ChannelStandardize(nn.Module):
    """RGB in [-1, 1] -> each channel with zero mean and unit variance per image."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True)
        return (x - mean) / (std + self.eps)


def _report_extractor(cfg: DANNConfig) -> nn.Sequential:
    # 28 -conv4-> 25 -pool-> 12 -conv5-> 8 -pool-> 3 -conv3-> 1
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=4),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(64, 64, kernel_size=5),
        nn.BatchNorm2d(64),
        nn.Dropout2d(cfg.dropout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(64, cfg.feature_dim, kernel_size=3),
        nn.Flatten(),
    )


def _conv_bn_relu(cin: int, cout: int, padding: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=padding, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _improved_extractor(cfg: DANNConfig) -> nn.Sequential:
    # 28 -> 14 -> 7, then a global average pool (tolerates shifted / rescaled digits);
    # ~8M multiply-adds per image, a little under the report's network.
    grey = cfg.input_normalization == "grey"
    return nn.Sequential(
        GreyStandardize() if grey else ChannelStandardize(),
        nn.Conv2d(1 if grey else 3, 32, 5, padding=2, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        *_conv_bn_relu(32, 64),
        nn.MaxPool2d(2),
        nn.Dropout2d(cfg.dropout / 2),
        *_conv_bn_relu(64, cfg.feature_dim),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def _mlp_head(in_dim: int, hidden_dims: list[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers += [nn.Linear(in_dim, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


@dataclass
class DANNOutput:
    """logits: [B, num_classes]; features: [B, feature_dim]; domain_logits: [B] (None unless asked)."""

    logits: torch.Tensor
    features: torch.Tensor
    domain_logits: torch.Tensor | None = None


class DANNModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="pytorch",
    tags=["domain-adaptation", "dann", "image-classification", "digits"],
):
    """Feature extractor + label predictor + domain classifier (through a gradient reversal layer).

    Inputs: `pixel_values` [B, 3, 28, 28] RGB in [-1, 1] (what `adapters.to_model_range` returns).
    """

    def __init__(self, config: DANNConfig):
        super().__init__()
        if isinstance(config, dict):
            config = DANNConfig(**config)
        self.config = config
        build = _report_extractor if config.architecture == "report" else _improved_extractor
        self.feature_extractor = build(config)
        self.label_predictor = _mlp_head(config.feature_dim, config.head_hidden_dims, config.num_classes)
        self.gradient_reversal = GradientReversal()
        self.domain_classifier = _mlp_head(config.feature_dim, config.head_hidden_dims, 1)

    def forward(self, pixel_values: torch.Tensor, grl_coeff: float | None = None) -> DANNOutput:
        """Class logits always; domain logits only when `grl_coeff` (the lambda of the reversal) is given."""
        if pixel_values.ndim != 4 or pixel_values.shape[1:] != (3, self.config.image_size, self.config.image_size):
            size = self.config.image_size
            raise ValueError(f"expected pixel_values of shape [B, 3, {size}, {size}], got {tuple(pixel_values.shape)}")
        features = self.feature_extractor(pixel_values)
        logits = self.label_predictor(features)
        domain_logits = None
        if grl_coeff is not None:
            domain_logits = self.domain_classifier(self.gradient_reversal(features, grl_coeff)).squeeze(1)
        return DANNOutput(logits=logits, features=features, domain_logits=domain_logits)

    @torch.no_grad()
    def predict(self, pixel_values: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """Class ids [N] for a stack of images, in eval mode, batch by batch."""
        was_training = self.training
        self.eval()
        preds = [self(chunk).logits.argmax(dim=1) for chunk in pixel_values.split(batch_size)]
        self.train(was_training)
        return torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
