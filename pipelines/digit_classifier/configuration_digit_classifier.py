"""The configuration of `DigitClassifier`, a transformers `PreTrainedConfig` saved as `config.json`.

This file is copied into model folders for `trust_remote_code`: it imports only transformers and its sibling
`pretrained_helpers`.
"""

from transformers import PretrainedConfig

from .pretrained_helpers import same_model_config


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
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        self.block_channels = list(self.block_channels)
        if self.id2label is None:
            # digit d is label "d": what the image-classification pipeline prints
            self.id2label = {i: str(i) for i in range(self.num_classes)}
            self.label2id = {str(i): i for i in range(self.num_classes)}
        super().__post_init__(**kwargs)
        if self.num_labels != self.num_classes:
            raise ValueError(f"id2label names {self.num_labels} classes but num_classes is {self.num_classes}")

    __eq__ = same_model_config  # equal when they build the same model, whatever save they went through
    __hash__ = None  # mutable, like every dataclass with an __eq__
