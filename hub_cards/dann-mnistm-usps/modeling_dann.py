"""Domain-Adversarial Neural Network (Ganin et al., 2016) as one Hub-ready model.

    image --feature_extractor--> f (128-d) --label_predictor-------------------> class logits
                                           \\--GradientReversal(lambda_p)--domain_classifier--> domain logit

`DANNModel` is a transformers `PreTrainedModel`: `save_pretrained(dir)` writes `config.json` (with `auto_map`),
`model.safetensors`, this file and its configuration, and the digit image processor; so
`AutoModelForImageClassification.from_pretrained(dir, trust_remote_code=True)` and
`transformers.pipeline("image-classification", model=dir, trust_remote_code=True)` need only transformers.
This file therefore imports only the libraries and its sibling files (transformers copies relative imports along).

Two feature extractors:
- `architecture="report"`: the course report's network, RGB in [-1, 1] straight in (like-for-like row).
- `architecture="improved"`: the image is turned grey and standardised per image inside the model (this
  removes most of MNIST-M's colour/background shift and makes the prediction command's preprocessing part
  of the checkpoint), then a small LeNet-style stack with global average pooling.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_dann import ARCHITECTURES, INPUT_NORMALIZATIONS, DANNConfig
from .image_processing_digits import DigitImageProcessor
from .pretrained_helpers import load_whole_model, without_progress_bars

__all__ = [
    "ARCHITECTURES",
    "INPUT_NORMALIZATIONS",
    "DANNConfig",
    "DANNModel",
    "DANNOutput",
    "GradientReversal",
    "dann_lambda",
]

# ITU-R BT.601 luma weights, the same as PIL's convert("L").
LUMA = (0.299, 0.587, 0.114)


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


class GreyStandardize(nn.Module):
    """RGB in [-1, 1] -> one grey channel with zero mean and unit variance per image."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)
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
    # ~8M multiply-adds per image at the default widths (32, 64), a little under the report's network.
    grey = cfg.input_normalization == "grey"
    first, second = cfg.conv_channels
    return nn.Sequential(
        GreyStandardize() if grey else ChannelStandardize(),
        nn.Conv2d(1 if grey else 3, first, 5, padding=2, bias=False),
        nn.BatchNorm2d(first),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        *_conv_bn_relu(first, second),
        nn.MaxPool2d(2),
        nn.Dropout2d(cfg.dropout / 2),
        *_conv_bn_relu(second, cfg.feature_dim),
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
class DANNOutput(ModelOutput):
    """logits: [B, num_classes]; features: [B, feature_dim]; domain_logits: [B] (None unless asked).

    A transformers `ModelOutput`, so `output["logits"]` works too (the image-classification pipeline reads it).
    """

    logits: torch.Tensor | None = None
    features: torch.Tensor | None = None
    domain_logits: torch.Tensor | None = None


class DANNModel(PreTrainedModel):
    """Feature extractor + label predictor + domain classifier (through a gradient reversal layer).

    Inputs: `pixel_values` [B, 3, 28, 28] RGB in [-1, 1] (what `adapters.to_model_range` returns).
    """

    config_class = DANNConfig
    base_model_prefix = "dann"
    main_input_name = "pixel_values"

    def __init__(self, config: DANNConfig | dict):
        if isinstance(config, dict):
            config = DANNConfig(**config)
        super().__init__(config)
        build = _report_extractor if config.architecture == "report" else _improved_extractor
        self.feature_extractor = build(config)
        self.label_predictor = _mlp_head(config.feature_dim, config.head_hidden_dims, config.num_classes)
        self.gradient_reversal = GradientReversal()
        self.domain_classifier = _mlp_head(config.feature_dim, config.head_hidden_dims, 1)
        self.post_init()

    def _init_weights(self, module):
        # PyTorch's own initialisation, the one the shipped model was trained from; transformers calls this
        # only for weights a checkpoint lacks.
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)):
            module.reset_parameters()
        elif isinstance(module, GreyStandardize):
            module.luma.copy_(torch.tensor(LUMA).view(1, 3, 1, 1))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' loading, refusing a folder whose weights do not fill this model (another model's)."""
        return load_whole_model(super().from_pretrained, cls, pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' save (config.json with auto_map, model.safetensors, this code), plus the image
        processor, so that the folder is complete for `pipeline("image-classification")`."""
        with without_progress_bars():
            super().save_pretrained(save_directory, *args, **kwargs)
        DigitImageProcessor(image_size=self.config.image_size, num_channels=3).save_pretrained(save_directory)

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


# `save_pretrained` then writes `auto_map` and copies this file and its siblings into the folder.
DANNConfig.register_for_auto_class()
DANNModel.register_for_auto_class("AutoModelForImageClassification")
DigitImageProcessor.register_for_auto_class("AutoImageProcessor")
