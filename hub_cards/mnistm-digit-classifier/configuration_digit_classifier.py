"""The configuration of `DigitClassifier`, a transformers `PreTrainedConfig` saved as `config.json`.

This file is copied into model folders for `trust_remote_code`: it imports only transformers and its sibling
`pretrained_helpers`.
"""

from transformers import PretrainedConfig

from .pretrained_helpers import check_class_names, name_digit_classes, same_model_config


class DigitClassifierConfig(PretrainedConfig):
    """Architecture of the digit CNN; `id2label` names the classes "0".."9" by default.

    Args:
        in_channels: 3 for RGB inputs, 1 for grey.
        num_classes: number of digits.
        block_channels: output channels of each stage (two conv3x3-BN-ReLU per stage).
        image_size: the side of the square inputs.
        dropout: before the linear head.
    """

    model_type = "digit_classifier"

    in_channels: int = 3
    num_classes: int = 10
    block_channels: list[int] | tuple[int, ...] = (32, 64, 128)
    image_size: int = 28
    dropout: float = 0.3

    def __post_init__(self, **kwargs):
        if len(self.block_channels) < 1:
            raise ValueError("block_channels must name at least one stage")
        self.block_channels = list(self.block_channels)
        name_digit_classes(self)
        super().__post_init__(**kwargs)
        check_class_names(self)

    __eq__ = same_model_config  # equal when they build the same model, whatever save they went through
    __hash__ = None  # mutable, like every dataclass with an __eq__
