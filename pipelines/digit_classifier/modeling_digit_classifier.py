"""A small CNN that recognises digits 0-9 in 28x28 RGB images (MNIST-M style).

It is the project's judge of generated digits: the course scored its 1000 generated images with a
small LeNet, and `pipelines.digit_classifier.score` does the same with this model.

    conv3x3-BN-ReLU x2 (c0) -> maxpool -> conv3x3-BN-ReLU x2 (c1) -> maxpool
    -> conv3x3-BN-ReLU x2 (c2) -> global average pool -> dropout -> linear(num_classes)

Inputs are float images in [-1, 1] (`adapters.to_model_range`); `images_to_tensor` converts PIL
images of any size or mode to that form, so any 28x28 RGB PNG can be scored.

The model is a transformers `PreTrainedModel`: `save_pretrained` writes `config.json` +
`model.safetensors` and copies this file and its configuration beside them (`auto_map`), so that
`AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)` loads it with only
transformers installed. This file therefore imports only the libraries and its sibling files.
"""

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

from .configuration_digit_classifier import DigitClassifierConfig
from .image_processing_digits import DigitImageProcessor
from .pretrained_helpers import load_whole_model, without_progress_bars


def _conv_bn_relu(in_channels, out_channels):
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class DigitClassifier(PreTrainedModel):
    """Three stages of two 3x3 conv-BN-ReLU layers, then a linear head; ~0.29M parameters by default.

    Built from a `DigitClassifierConfig` or from its fields as keywords (`DigitClassifier(block_channels=(4, 8))`).
    `forward` returns the logits tensor; `DigitClassifierForImageClassification` wraps the same weights in
    transformers' output type for `AutoModelForImageClassification` and the image-classification pipeline.
    """

    config_class = DigitClassifierConfig
    base_model_prefix = "digit_classifier"
    main_input_name = "pixel_values"

    def __init__(self, config: DigitClassifierConfig | None = None, **kwargs):
        if config is None:
            config = DigitClassifierConfig(**kwargs)
        elif kwargs:
            raise ValueError(f"give either a config or its fields as keywords, not both ({sorted(kwargs)})")
        super().__init__(config)
        layers = []
        channels = config.in_channels
        for stage, out_channels in enumerate(config.block_channels):
            layers += _conv_bn_relu(channels, out_channels) + _conv_bn_relu(out_channels, out_channels)
            if stage < len(config.block_channels) - 1:
                layers.append(nn.MaxPool2d(2))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(config.dropout), nn.Linear(channels, config.num_classes))
        # transformers' image-classification Auto class must build the class with its output type; the module
        # is named as it is in saved folders (this file's own name), whichever class is saved.
        module = __name__.rsplit(".", 1)[-1]
        config.auto_map = {
            **(getattr(config, "auto_map", None) or {}),
            "AutoModelForImageClassification": f"{module}.DigitClassifierForImageClassification",
        }
        self.post_init()

    def _init_weights(self, module):
        # PyTorch's own initialisation, the one the shipped model was trained from; transformers calls this
        # only for weights a checkpoint lacks.
        if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            module.reset_parameters()

    def logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] in [-1, 1] -> logits [N, num_classes]."""
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.in_channels:
            raise ValueError(
                f"expected images of shape [N, {self.config.in_channels}, H, W], got {tuple(pixel_values.shape)}"
            )
        features = self.features(pixel_values).mean(dim=(2, 3))
        return self.head(features)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] in [-1, 1] -> logits [N, num_classes]."""
        return self.logits(pixel_values)

    @torch.no_grad()
    def predict(self, pixel_values: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Predicted class ids [N] for images in [-1, 1], in eval mode and in batches."""
        was_training = self.training
        self.eval()
        predictions = [
            self.logits(chunk.to(self.device, self.dtype)).argmax(dim=1).cpu()
            for chunk in pixel_values.split(batch_size)
        ]
        self.train(was_training)
        return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        folder = Path(str(pretrained_model_name_or_path))
        diffusers_weights = folder / "diffusion_pytorch_model.safetensors"
        if diffusers_weights.is_file() and not (folder / "model.safetensors").is_file():
            # a folder saved in diffusers' layout (ModelMixin file names, config.json without model_type) holds the
            # same fields and weights; transformers' loader would not find them
            fields = json.loads((folder / "config.json").read_text())
            if fields.get("_class_name", cls.__name__) != cls.__name__:
                raise ValueError(f"{folder} holds a {fields['_class_name']}, not a {cls.__name__}")
            model = cls(DigitClassifierConfig(**{k: v for k, v in fields.items() if not k.startswith("_")}))
            model.load_state_dict(load_file(str(diffusers_weights)))
            dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))  # transformers' name, and its older one
            return model.to(dtype).eval() if isinstance(dtype, torch.dtype) else model.eval()
        return load_whole_model(super().from_pretrained, cls, pretrained_model_name_or_path, *args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' save (config.json with auto_map, model.safetensors, this code), plus the image
        processor, so that the folder is complete for `pipeline("image-classification", ...)`."""
        with without_progress_bars():
            super().save_pretrained(save_directory, *args, **kwargs)
        self.image_processor().save_pretrained(save_directory)

    def image_processor(self) -> DigitImageProcessor:
        """The preprocessing this model expects, saved beside it as `preprocessor_config.json`."""
        return DigitImageProcessor(image_size=self.config.image_size, num_channels=self.config.in_channels)

    def images_to_tensor(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images of any mode or size -> float [N, C, S, S] in [-1, 1] at the model's image size.

        Resizing uses bilinear filtering, as the training data (32x32 MNIST-M) was resized to 28x28.
        """
        return self.image_processor()(list(images))["pixel_values"]


class DigitClassifierForImageClassification(DigitClassifier):
    """The same network and weights, returning `ImageClassifierOutput` (with the cross-entropy `loss` when
    `labels` are given), as transformers' image-classification pipeline and Trainer expect."""

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> ImageClassifierOutput:
        logits = self.logits(pixel_values)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return ImageClassifierOutput(loss=loss, logits=logits)


# `save_pretrained` then writes `auto_map` and copies these files into the folder (transformers' remote code).
DigitClassifierConfig.register_for_auto_class()
DigitClassifier.register_for_auto_class("AutoModel")
DigitClassifierForImageClassification.register_for_auto_class("AutoModelForImageClassification")
DigitImageProcessor.register_for_auto_class("AutoImageProcessor")
