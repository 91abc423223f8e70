"""Evaluation of a trained DANN model: accuracy, AdaBN, temperature scaling, calibration error, resize robustness.

None of these functions looks at target labels to change the model: `adapt_batchnorm` uses unlabelled target
images and `fit_temperature` uses labelled SOURCE validation images; target labels only produce the numbers
reported.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from adapters import DIGIT_DATASETS, load_digits, to_model_range
from adapters.digits import open_image
from training.dann.data import augment_with_flags


def _batchnorms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def accuracy(model, images_u8: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    predictions = model.predict(to_model_range(images_u8), batch_size=batch_size)
    return (predictions == labels).float().mean().item()


@torch.no_grad()
def adapt_batchnorm(model, images_u8: torch.Tensor, batch_size: int) -> None:
    """AdaBN (Li et al., 2016): re-estimate every BatchNorm's statistics on the target images alone.

    Training mixes source and target in each batch, so the running statistics describe the mixture;
    at test time only the target is seen. Dropout stays off so that it does not inflate the variances.
    """
    norms = _batchnorms(model)
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over all batches
    model.eval()
    for norm in norms:
        norm.train()
    for chunk in images_u8.split(batch_size):
        model(to_model_range(chunk))
    for norm in norms:
        norm.momentum = 0.1
    model.eval()


@torch.no_grad()
def logits_with_own_statistics(model, pixel_values: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits with BatchNorm normalising by each chunk's own statistics (running statistics untouched).

    After AdaBN the stored statistics are the target's; source images pushed through them would meet a
    normalisation no source image meets in use, so source-side measurements use their own statistics.
    """
    norms = _batchnorms(model)
    saved = [(n.running_mean.clone(), n.running_var.clone(), n.num_batches_tracked.clone()) for n in norms]
    model.eval()
    for norm in norms:
        norm.train()
    logits = torch.cat([model(chunk).logits.float() for chunk in pixel_values.split(batch_size)])
    for norm, (mean, var, count) in zip(norms, saved):
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)
        norm.num_batches_tracked.copy_(count)
    model.eval()
    return logits


@torch.no_grad()
def eval_logits(model, images_u8: torch.Tensor, batch_size: int) -> torch.Tensor:
    model.eval()
    return torch.cat([model(to_model_range(chunk)).logits.float() for chunk in images_u8.split(batch_size)])


def fit_temperature(
    logits: torch.Tensor, labels: torch.Tensor, low: float = 0.05, high: float = 20.0, points: int = 400
) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) (Guo et al., 2017), on a log grid.

    A grid over [low, high] rather than gradient descent: one dimension, no learning rate, deterministic.
    """
    if len(logits) == 0:
        raise ValueError("cannot fit a temperature on zero examples")
    grid = torch.logspace(math.log10(low), math.log10(high), points)
    nll = torch.stack([F.cross_entropy(logits.float() / t, labels) for t in grid])
    # logspace's float32 end points can land a hair outside [low, high]
    return min(max(float(grid[int(nll.argmin())]), low), high)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE: sum over equal-width confidence bins of (bin share) * |accuracy - mean confidence|."""
    confidence, predictions = probs.max(dim=1)
    correct = (predictions == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.float().mean() * (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
    return float(ece)


RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def validation_resized(name: str, source: str | None, resample: str, image_size: int = 28):
    """The validation split as uint8 [N, 3, S, S] resized from its native size with another PIL filter.

    Training data is resized with bilinear; this measures how a model copes with users' other tools.
    """
    if resample not in RESAMPLE:
        raise ValueError(f"unknown resample filter {resample!r}; choose one of {sorted(RESAMPLE)}")
    dataset = load_digits(name, source=source, split="validation")
    raw = dataset.cast_column("image", type(dataset.features["image"])(decode=False))
    arrays = []
    for index, value in enumerate(raw["image"]):
        image = open_image(value, index).convert("RGB")
        if image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), RESAMPLE[resample])
        arrays.append(np.asarray(image, dtype=np.uint8))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return images, torch.as_tensor(dataset["label"], dtype=torch.int64)


def final_metrics(model, args, source, target, history: list[dict], total_steps: int, world: int, start: float) -> dict:
    """AdaBN, temperature scaling on source validation images, and the numbers reported for the run."""
    final = {
        "source": args.source,
        "target": args.target,
        "mode": args.mode,
        "architecture": args.architecture,
        # measured before any BatchNorm re-estimation, which specialises the model to the target
        "source_val_accuracy": accuracy(model, source.val_images, source.val_labels, args.eval_batch_size),
    }
    if args.adapt_bn:
        final["target_val_accuracy_before_adapt_bn"] = accuracy(
            model, target.val_images, target.val_labels, args.eval_batch_size
        )
        # a fixed random subset: BatchNorm statistics settle long before 50,000 images
        subset = torch.randperm(len(target.train_images), generator=torch.Generator().manual_seed(args.seed))
        subset = subset[: args.adapt_bn_images].to(target.train_images.device)
        adapt_batchnorm(model, target.train_images[subset], args.eval_batch_size)
    # Temperature: source validation images as training presented them (same augmentation, fixed seed),
    # each batch normalised by its own statistics; target labels never enter.
    calibration = to_model_range(source.val_images)
    if args.augment:
        calibration = augment_with_flags(
            calibration, torch.Generator(device=calibration.device).manual_seed(args.seed), args, args.aug_scale
        )
    source_logits = logits_with_own_statistics(model, calibration, args.eval_batch_size).cpu()
    model.config.temperature = fit_temperature(source_logits, source.val_labels.cpu())
    target_logits = eval_logits(model, target.val_images, args.eval_batch_size).cpu()
    target_labels = target.val_labels.cpu()
    final.update(
        {
            "target_val_accuracy": (target_logits.argmax(1) == target_labels).float().mean().item(),
            "target_val_note": target.val_note,
            "temperature": model.config.temperature,
            "target_val_ece": expected_calibration_error(target_logits.softmax(1), target_labels),
            "target_val_ece_calibrated": expected_calibration_error(
                (target_logits / model.config.temperature).softmax(1), target_labels
            ),
        }
    )
    # Only targets stored smaller than the model's input are enlarged by users' tools (USPS: 16 px), and only
    # a real validation split has an undecoded copy to resize again (not the embedded subsets, not held-out rows).
    if (
        args.target_dir
        and target.val_note == "validation split"
        and DIGIT_DATASETS[args.target].native_size < target.val_images.shape[-1]
    ):
        images, labels = validation_resized(args.target, args.target_dir, "nearest")
        final["target_val_accuracy_nearest_resize"] = accuracy(
            model, images.to(target.val_images.device), labels.to(target.val_labels.device), args.eval_batch_size
        )
    final.update(
        {
            "steps": total_steps,
            "batch_size": args.batch_size,
            "images_seen": total_steps * args.batch_size,
            "num_processes": world,
            "wall_time_s": time.perf_counter() - start,
            # CPU seconds of this process: on a shared machine the wall time says more about the neighbours
            "cpu_time_s": time.process_time(),
            "history": history,
        }
    )
    return final
