"""Adapt a digit, for the demo: an uploaded or drawn digit through the shipped adapted DANN model, and through a
source-only model of the same pair where one ships.

Images become the models' input exactly as in `python -m pipelines.dann` (its image processor: RGB, a transparent
background laid on an opaque ground, 28x28 PIL bilinear, [-1, 1]).
USPS digits, the target domain, are light strokes on a dark ground; a drawing (dark pen on a light canvas) is
inverted into that, while an upload is used as it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import torch

from pipelines.dann.image_processing_digits import DigitImageProcessor
from pipelines.dann.modeling_dann import DANNModel
from pipelines.demo.models import DemoModels

# A digit needs a few dozen pixels a side; larger uploads are refused before they are decoded, so a
# decompression bomb costs nothing (PIL reads the size from the header).
MAX_IMAGE_SIDE = 4096


def open_digit_image(path: str | Path) -> PIL.Image.Image:
    """An uploaded file as a decoded PIL image; a file that is no image or too large is a one-line error."""
    path = Path(path)
    try:
        with PIL.Image.open(path) as image:
            width, height = image.size
            if max(width, height) > MAX_IMAGE_SIDE:
                raise ValueError(
                    f"{path.name} is {width}x{height} pixels; the demo takes images up to "
                    f"{MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} (a digit needs 28x28)"
                )
            image.load()
            return image.copy()
    except PIL.Image.DecompressionBombError:
        raise ValueError(f"{path.name} is too large an image (more pixels than PIL decodes safely)") from None
    except (PIL.UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path.name} is not an image PIL can read ({type(error).__name__})") from None


def drawing_to_digit(drawing: np.ndarray) -> PIL.Image.Image:
    """A drawing (H x W x 3 RGB or x 4 RGBA, dark strokes on a light or transparent canvas) -> grey image with
    light strokes on black, as USPS digits are."""
    array = np.asarray(drawing)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise ValueError(f"expected a drawing as an H x W x 3 or 4 uint8 array, got {array.shape} {array.dtype}")
    image = PIL.Image.fromarray(array)
    if array.shape[2] == 4:  # where nothing was drawn the canvas is transparent: put it on white paper
        paper = PIL.Image.new("RGBA", image.size, "white")
        image = PIL.Image.alpha_composite(paper, image)
    strokes = 255 - np.asarray(image.convert("L"))
    if strokes.max() == 0:
        raise ValueError("the drawing is empty: draw a digit first")
    return PIL.Image.fromarray(strokes)


@torch.no_grad()
def class_probabilities(model: DANNModel, image: PIL.Image.Image) -> dict[str, float]:
    """{"0": p, ..., "9": p}: softmax(logits / T) with the temperature the model stores (as `--with_confidence`)."""
    pixel_values = DigitImageProcessor(image_size=model.config.image_size)([image])["pixel_values"]
    temperature = float(getattr(model.config, "temperature", 1.0))
    probabilities = (model(pixel_values).logits.float() / temperature).softmax(dim=1)[0]
    return {str(digit): float(p) for digit, p in enumerate(probabilities)}


def model_input_picture(image: PIL.Image.Image, size: int = 28) -> PIL.Image.Image:
    """What the models see: the 28x28 RGB input, as the command resizes it."""
    pixels = DigitImageProcessor(image_size=size)([image])["pixel_values"][0]
    return PIL.Image.fromarray(((pixels.permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())


def source_only_note(models: DemoModels) -> str:
    """Why there is no source-only answer beside the adapted one, or which folder gives it."""
    card = models.adapted_card
    if models.source_only_card is not None:
        return f"Source-only: `{models.source_only_card.folder.name}` (trained on {card.source} only)."
    return (
        f"No source-only model ships: `hub_cards/` holds only the adapted {card.source} → {card.target} model "
        f"(`{card.folder.name}`, mode `{card.mode}`). The source-only runs of the README's table were "
        "experiment outputs, not published; `python -m training.report.dann_experiments --modes source_only` "
        "trains one (0.983 ± 0.003 on USPS validation over 3 seeds), and a folder of it in `hub_cards/` whose "
        "metrics.json says mode `source_only` appears here beside the adapted answer."
    )


def adapt(models: DemoModels, image: PIL.Image.Image) -> dict:
    """The adapted model's probabilities, the source-only model's (or None), and the input the models see."""
    return {
        "adapted": class_probabilities(models.adapted, image),
        "source_only": class_probabilities(models.source_only, image) if models.source_only is not None else None,
        "input": model_input_picture(image, models.adapted.config.image_size),
    }
