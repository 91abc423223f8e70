"""The image processor of the digit models: any PIL image -> float [N, C, S, S] in [-1, 1].

It is the preprocessing the models were trained with (`adapters.digit_pixel_values`): convert to RGB (or
grey), resize to S x S with PIL bilinear when the size differs, then x / 127.5 - 1. An image with transparency
(RGBA, LA, a palette with a transparent colour) is first laid on an opaque ground (`on_opaque_ground`).
It is saved beside the DANN and classifier weights (`preprocessor_config.json` + this file), so that
`transformers.pipeline("image-classification", model=folder, trust_remote_code=True)` sees the same tensors
as the project's commands.

This file is copied into model folders for `trust_remote_code`: it imports only numpy, PIL, torch and
transformers. `pipelines/dann/` holds a symbolic link to it (see `pretrained_helpers`).
"""

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature


def on_opaque_ground(image: PIL.Image.Image) -> PIL.Image.Image:
    """An image with transparency laid on black when its visible strokes are light, on white when they are dark.

    The digits the models learnt are strokes on a ground of another brightness (light on dark in USPS and MNIST).
    In a digit saved with a transparent background the ground is the transparent part, and the colour its pixels
    hold is arbitrary: dropping the alpha channel shows it (often the strokes' own colour, so the image is blank
    and every digit gets one label). The ground chosen contrasts with the strokes, judged by their brightness
    weighted by opacity; images without transparency are returned as they are.
    """
    if image.mode not in ("RGBA", "LA", "PA", "RGBa", "La") and "transparency" not in image.info:
        return image
    rgba = image.convert("RGBA")
    opacity = np.asarray(rgba.getchannel("A"), dtype=np.float64)
    brightness = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float64)
    light_strokes = opacity.sum() > 0 and np.average(brightness, weights=opacity) >= 127.5
    ground = PIL.Image.new("RGBA", rgba.size, "black" if light_strokes or opacity.sum() == 0 else "white")
    return PIL.Image.alpha_composite(ground, rgba).convert("RGB")


class DigitImageProcessor(BaseImageProcessor):
    """PIL images (or uint8 arrays H x W / H x W x C) of any size and mode -> `pixel_values` in [-1, 1].

    Args:
        image_size: the side S the model expects (28 for the shipped models).
        num_channels: 3 (RGB) or 1 (grey).
    """

    model_input_names = ["pixel_values"]

    def __init__(self, image_size: int = 28, num_channels: int = 3, **kwargs):
        super().__init__(**kwargs)
        if num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 (grey) or 3 (RGB), got {num_channels}")
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.image_size = image_size
        self.num_channels = num_channels

    def _to_array(self, image) -> np.ndarray:
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8:
                raise ValueError(f"arrays must be uint8 images (H x W or H x W x C), got dtype {image.dtype}")
            image = PIL.Image.fromarray(image)
        if not isinstance(image, PIL.Image.Image):
            raise ValueError(f"expected PIL images or uint8 arrays, got {type(image).__name__}")
        size = self.image_size
        image = on_opaque_ground(image).convert("RGB" if self.num_channels == 3 else "L")
        if image.size != (size, size):
            # bilinear, as the 32x32 MNIST-M training images were brought to 28x28
            image = image.resize((size, size), PIL.Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8).reshape(size, size, self.num_channels)

    def preprocess(self, images, return_tensors="pt", **kwargs) -> BatchFeature:
        """One image or a list of them -> BatchFeature(pixel_values=[N, C, S, S] float32 in [-1, 1])."""
        if return_tensors not in ("pt", None):
            raise ValueError(f"only return_tensors='pt' is supported, got {return_tensors!r}")
        if isinstance(images, (PIL.Image.Image, np.ndarray)):
            images = [images]
        arrays = [self._to_array(image) for image in images]
        if arrays:
            batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        else:
            batch = torch.empty(0, self.num_channels, self.image_size, self.image_size, dtype=torch.uint8)
        # the same arithmetic as adapters.to_model_range, so the tensors match the commands' bit for bit
        return BatchFeature(data={"pixel_values": batch.float().div(127.5).sub(1.0)})
