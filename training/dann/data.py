"""Digit splits for DANN as uint8 tensors, decoded once, plus batched augmentation on tensors.

Validation data: a dataset's own validation split when it has one. A dataset with a train split only
(the shared 5,000-image MNIST subset) holds out the LAST `holdout_per_class` images of each class of its
train split (100 per class = 1,000 images for mnist5k); those never take part in training.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from adapters import DIGIT_DATASETS, DigitSourceError, decode_digits, load_digits
from pipelines.dann.modeling_dann import LUMA

logger = logging.getLogger(__name__)


@dataclass
class DigitSplits:
    """uint8 images [N, 3, 28, 28] and int64 labels [N] for training and validation."""

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    val_note: str

    def to(self, device) -> DigitSplits:
        moved = {k: getattr(self, k).to(device) for k in ("train_images", "train_labels", "val_images", "val_labels")}
        return DigitSplits(self.name, **moved, val_note=self.val_note)


def holdout_last_per_class(labels: torch.Tensor, per_class: int) -> torch.Tensor:
    """Boolean mask of the last `per_class` rows of each class (in file order)."""
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for digit in labels.unique():
        rows = (labels == digit).nonzero().squeeze(1)
        if len(rows) <= per_class:
            raise ValueError(f"class {int(digit)} has only {len(rows)} images; cannot hold out {per_class}")
        mask[rows[-per_class:]] = True
    return mask


def load_splits(name: str, source: str | None, image_size: int = 28, holdout_per_class: int = 100) -> DigitSplits:
    """Train + validation tensors of one digit dataset (see the module docstring for validation)."""
    if name not in DIGIT_DATASETS:
        raise ValueError(f"unknown digit dataset {name!r}; choose one of {sorted(DIGIT_DATASETS)}")
    train_images, train_labels = decode_digits(load_digits(name, source=source, split="train"), image_size)
    try:
        val_ds = load_digits(name, source=source, split="validation")
    except (DigitSourceError, FileNotFoundError) as error:
        logger.warning(
            "%s has no validation split (%s); holding out the last %d images per class of train",
            name,
            error,
            holdout_per_class,
        )
        held = holdout_last_per_class(train_labels, holdout_per_class)
        note = f"last {holdout_per_class} train images per class ({int(held.sum())} images)"
        return DigitSplits(name, train_images[~held], train_labels[~held], train_images[held], train_labels[held], note)
    val_images, val_labels = decode_digits(val_ds, image_size)
    return DigitSplits(name, train_images, train_labels, val_images, val_labels, "validation split")


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator,
    max_rotation: float = 15.0,
    scale: tuple[float, float] = (0.9, 1.5),
    max_translate: float = 0.1,
) -> torch.Tensor:
    """Random rotation (degrees), zoom (>1 enlarges the digit) and shift (fraction of the side), per image.

    images: float [B, C, H, W]; one `affine_grid` + `grid_sample` for the whole batch.
    """
    batch = images.shape[0]

    def uniform(low, high):
        return torch.rand(batch, generator=generator, device=generator.device).mul(high - low).add(low)

    angle = uniform(-max_rotation, max_rotation) * (math.pi / 180.0)
    zoom = uniform(*scale)
    shift = torch.stack([uniform(-max_translate, max_translate) for _ in range(2)], dim=1) * 2.0
    # affine_grid maps output coordinates to input coordinates, hence the inverse zoom.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype).to(images.device), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_invert(
    images: torch.Tensor, generator: torch.Generator, probability: float, per_channel: bool = False
) -> torch.Tensor:
    """Negate (x -> -x in [-1, 1]) each image, or each channel of each image, with the given probability.

    Whole images: dark-on-light <-> light-on-dark. Per channel: a grey digit becomes a coloured digit on a
    coloured background with any of the 2^C polarity combinations, which is what an MNIST-M digit looks like
    after per-channel standardisation (its digit is the inverted colour of the photo patch behind it).
    """
    shape = (images.shape[0], images.shape[1] if per_channel else 1)
    flip = torch.rand(shape, generator=generator, device=generator.device) < probability
    sign = 1.0 - 2.0 * flip.to(images.device, images.dtype)
    return images * sign.view(*shape, 1, 1)


def random_resample(
    images: torch.Tensor, generator: torch.Generator, probability: float, sizes: tuple[int, int] = (12, 24)
) -> torch.Tensor:
    """With the given probability per image, shrink it to a random side in `sizes` (area averaging) and
    enlarge it back, half of the time with nearest-neighbour (blocky edges) and half with bilinear (blur).

    Users' digits reach the model resized by whatever their tools do; nearest-neighbour upscaling of a
    16x16 USPS digit alone cost the first shipped model 5 points. images: float [B, C, H, W].
    """
    batch, side = images.shape[0], images.shape[-1]
    device = generator.device
    chosen = torch.rand(batch, generator=generator, device=device) < probability
    small = torch.randint(sizes[0], sizes[1] + 1, (batch,), generator=generator, device=device)
    nearest = torch.rand(batch, generator=generator, device=device) < 0.5
    out = images.clone()
    # one interpolate per (size, mode) group: at most 2 * (sizes[1] - sizes[0] + 1) small calls per batch
    for size in small[chosen].unique().tolist():
        for use_nearest in (True, False):
            rows = (chosen & (small == size) & (nearest == use_nearest)).nonzero().squeeze(1).to(images.device)
            if len(rows) == 0:
                continue
            shrunk = F.interpolate(images[rows], size=(size, size), mode="area")
            if use_nearest:
                out[rows] = F.interpolate(shrunk, size=(side, side), mode="nearest")
            else:
                out[rows] = F.interpolate(shrunk, size=(side, side), mode="bilinear", align_corners=False)
    return out


def random_thicken(images: torch.Tensor, generator: torch.Generator, probability: float) -> torch.Tensor:
    """With the given probability per image, thicken its light strokes by one pixel on every side (a 3x3
    grey dilation, i.e. a stride-1 max pool). MNIST-M's digits are drawn about twice as thick as the MNIST
    digits they came from look at 28x28, so a model trained on MNIST meets bolder digits there.

    images: float [B, C, H, W] with light strokes on a dark ground.
    """
    chosen = torch.rand(images.shape[0], generator=generator, device=generator.device) < probability
    thick = F.max_pool2d(images, kernel_size=3, stride=1, padding=1)
    return torch.where(chosen.to(images.device).view(-1, 1, 1, 1), thick, images)


def random_texture(
    shape: tuple[int, int, int, int],
    generator: torch.Generator,
    grid_sizes: tuple[int, ...] = (2, 4, 7, 14, 28),
    max_edges: int = 3,
) -> torch.Tensor:
    """Random photo-like colour textures in [0, 1], float [B, C, H, W].

    Natural patches are mostly light and shade with a little colour, with edges and fine grain, so: grey noise
    at several scales (coarse blobs to single pixels, each with a random strength) plus weaker colour noise,
    up to `max_edges` straight edges (half-planes brighter or darker by a random step), a random tint, and a
    random contrast and brightness per image.
    """
    batch, channels, height, width = shape
    device = generator.device

    def uniform(*size, low=0.0, high=1.0):
        return torch.rand(*size, generator=generator, device=device) * (high - low) + low

    saturation = uniform(batch, 1, 1, 1, high=0.6)
    texture = torch.zeros(shape, device=device)
    for size in grid_sizes:
        noise = uniform(batch, 1, size, size) + saturation * uniform(batch, channels, size, size)
        strength = uniform(batch, 1, 1, 1) ** 2  # often faint: not every patch is grainy
        texture += strength * F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False)
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, height, device=device), torch.linspace(-1, 1, width, device=device), indexing="ij"
    )
    for _ in range(max_edges):
        angle = uniform(batch, 1, 1, high=2 * math.pi)
        side = (xs * torch.cos(angle) + ys * torch.sin(angle) > uniform(batch, 1, 1, low=-0.8, high=0.8)).float()
        texture += uniform(batch, 1, 1, 1, low=-1.5, high=1.5) * side.unsqueeze(1)
    low = texture.amin(dim=(1, 2, 3), keepdim=True)
    high = texture.amax(dim=(1, 2, 3), keepdim=True)
    texture = (texture - low) / (high - low).clamp_min(1e-6) * uniform(batch, channels, 1, 1, low=0.4)
    contrast = uniform(batch, 1, 1, 1, low=0.3)
    offset = uniform(batch, 1, 1, 1) * (1.0 - contrast)
    return texture * contrast + offset


def random_background(images: torch.Tensor, generator: torch.Generator, probability: float) -> torch.Tensor:
    """With the given probability per image, put its digit on a random colour texture the way MNIST-M was
    made from MNIST: out = |texture - digit| per channel (Ganin & Lempitsky 2015), so the digit's strokes
    take the inverted colours of the texture behind them.

    images: float [B, C, H, W] in [-1, 1] with a light digit on a dark ground (MNIST); the digit is the image's
    luma. No target image is used: this is source augmentation, and a source-only model gets it too.
    """
    chosen = torch.rand(images.shape[0], generator=generator, device=generator.device) < probability
    texture = random_texture(tuple(images.shape), generator).to(images.device, images.dtype)
    luma = torch.tensor(LUMA, device=images.device, dtype=images.dtype)[: images.shape[1]]
    digit = ((images * luma.view(1, -1, 1, 1)).sum(dim=1, keepdim=True) / luma.sum() + 1.0) / 2.0
    blended = (texture - digit).abs() * 2.0 - 1.0
    return torch.where(chosen.to(images.device).view(-1, 1, 1, 1), blended, images)


def augment_with_flags(
    images: torch.Tensor, generator: torch.Generator, args, scale, backgrounds: bool = False
) -> torch.Tensor:
    """train_dann's --augment: affine (zoom range `scale`); --aug_thicken and --aug_background (labelled
    images only: `backgrounds=True`); then --aug_invert / --aug_channel_invert / --aug_resample. `args` is
    anything with those attributes (the parsed flags)."""
    images = random_affine(images, generator, args.aug_rotation, tuple(scale), args.aug_translate)
    if backgrounds and getattr(args, "aug_thicken", 0.0) > 0:
        images = random_thicken(images, generator, args.aug_thicken)
    if backgrounds and getattr(args, "aug_background", 0.0) > 0:
        images = random_background(images, generator, args.aug_background)
    if args.aug_invert > 0:
        images = random_invert(images, generator, args.aug_invert)
    if args.aug_channel_invert > 0:
        images = random_invert(images, generator, args.aug_channel_invert, per_channel=True)
    if args.aug_resample > 0:
        images = random_resample(images, generator, args.aug_resample)
    return images
