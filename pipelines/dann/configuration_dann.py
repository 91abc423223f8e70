"""The configuration of `DANNModel`, a transformers `PreTrainedConfig` saved as `config.json`.

This file is copied into model folders for `trust_remote_code`: it imports only transformers and its sibling
`pretrained_helpers`.
"""

from transformers import PretrainedConfig

from .pretrained_helpers import check_class_names, name_digit_classes, same_model_config

ARCHITECTURES = ("report", "improved")
INPUT_NORMALIZATIONS = ("grey", "per_channel")


class DANNConfig(PretrainedConfig):
    """Everything needed to rebuild a `DANNModel`; `id2label` names the classes "0".."9" by default."""

    model_type = "dann"

    architecture: str = "improved"
    # improved extractor only: "grey" (luma, then per-image standardisation: colour-free) or "per_channel"
    # (each RGB channel standardised per image: keeps colour contrast, which MNIST-M digits may need when
    # digit and background have the same luminance).
    input_normalization: str = "grey"
    num_classes: int = 10
    image_size: int = 28
    feature_dim: int = 128
    # improved extractor only: the widths of its first two convolution blocks (the third is feature_dim)
    conv_channels: list[int] | tuple[int, ...] = (32, 64)
    head_hidden_dims: list[int] | tuple[int, ...] = (1024, 256)
    dropout: float = 0.5
    # lambda_p = lambda_max * (2 / (1 + exp(-lambda_gamma * p)) - 1)
    lambda_gamma: float = 10.0
    lambda_max: float = 1.0
    # softmax temperature for calibrated confidences (1.0: the raw logits)
    temperature: float = 1.0

    def __post_init__(self, **kwargs):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r}; expected one of {ARCHITECTURES}")
        if self.input_normalization not in INPUT_NORMALIZATIONS:
            raise ValueError(
                f"unknown input_normalization {self.input_normalization!r}; expected one of {INPUT_NORMALIZATIONS}"
            )
        if self.image_size != 28:
            raise ValueError(f"the DANN networks are built for 28x28 inputs, got image_size={self.image_size}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        self.head_hidden_dims = list(self.head_hidden_dims)
        self.conv_channels = list(self.conv_channels)
        if len(self.conv_channels) != 2 or min(self.conv_channels) < 1:
            raise ValueError(f"conv_channels must be two positive widths, got {self.conv_channels}")
        name_digit_classes(self)
        super().__post_init__(**kwargs)
        check_class_names(self)

    __eq__ = same_model_config  # equal when they build the same model, whatever save they went through
    __hash__ = None  # mutable, like every dataclass with an __eq__
