"""A small CNN that recognises digits 0-9 in 28x28 RGB images (MNIST-M style).

It is the project's judge of generated digits: the course scored its 1000 generated images with a
small LeNet, and `pipelines.digit_classifier.score` does the same with this model.

    conv3x3-BN-ReLU x2 (c0) -> maxpool -> conv3x3-BN-ReLU x2 (c1) -> maxpool
    -> conv3x3-BN-ReLU x2 (c2) -> global average pool -> dropout -> linear(num_classes)

Inputs are float images in [-1, 1] (`adapters.to_model_range`); `images_to_tensor` converts PIL
images of any size or mode to that form, so any 28x28 RGB PNG can be scored.
"""

from collections.abc import Sequence

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from PIL import Image
from torch import nn


def _conv_bn_relu(in_channels, out_channels):
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class DigitClassifier(ModelMixin, ConfigMixin):
    """Three stages of two 3x3 conv-BN-ReLU layers, then a linear head; ~0.29M parameters by default.

    Saved and loaded with `save_pretrained` / `from_pretrained` (safetensors + config.json).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        block_channels: Sequence[int] = (32, 64, 128),
        image_size: int = 28,
        dropout: float = 0.3,
    ):
        super().__init__()
        if len(block_channels) < 1:
            raise ValueError("block_channels must name at least one stage")
        layers = []
        channels = in_channels
        for stage, out_channels in enumerate(block_channels):
            layers += _conv_bn_relu(channels, out_channels) + _conv_bn_relu(out_channels, out_channels)
            if stage < len(block_channels) - 1:
                layers.append(nn.MaxPool2d(2))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] in [-1, 1] -> logits [N, num_classes]."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected images of shape [N, {self.config.in_channels}, H, W], got {tuple(pixel_values.shape)}"
            )
        features = self.features(pixel_values).mean(dim=(2, 3))
        return self.head(features)

    @torch.no_grad()
    def predict(self, pixel_values: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Predicted class ids [N] for images in [-1, 1], in eval mode and in batches."""
        was_training = self.training
        self.eval()
        predictions = [
            self(chunk.to(self.device, self.dtype)).argmax(dim=1).cpu()
            for chunk in pixel_values.split(batch_size)
        ]
        self.train(was_training)
        return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long)

    def images_to_tensor(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images of any mode or size -> float [N, C, S, S] in [-1, 1] at the model's image size.

        Resizing uses bilinear filtering, as the training data (32x32 MNIST-M) was resized to 28x28.
        """
        size = self.config.image_size
        mode = "RGB" if self.config.in_channels == 3 else "L"
        arrays = []
        for image in images:
            image = image.convert(mode)
            if image.size != (size, size):
                image = image.resize((size, size), Image.BILINEAR)
            arrays.append(np.asarray(image, dtype=np.uint8).reshape(size, size, -1))
        if not arrays:
            return torch.empty(0, self.config.in_channels, size, size)
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
        return batch / 127.5 - 1.0
