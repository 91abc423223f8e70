"""Command-line flags of training/train_dann.py, checked before any data is read."""

from __future__ import annotations

import argparse

from adapters import DIGIT_DATASETS
from pipelines.command_line import check_seed
from pipelines.dann.modeling_dann import ARCHITECTURES, INPUT_NORMALIZATIONS
from training.dann.methods import MODES

# Flags a resumed run may change and still be the same run (training/run_folder.py): where it is written, how
# many epochs it runs, how often it saves and evaluates, how fast it computes.
FREE_FLAGS = (
    "output_dir",
    "resume_from_checkpoint",
    "epochs",
    "checkpoint_every",
    "checkpoints_total_limit",
    "eval_every",
    "eval_batch_size",
    "num_threads",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train a DANN digit classifier: source-only, DANN, mean teacher, VADA or target-only."
    )
    parser.add_argument("--source", default="mnistm", help=f"source dataset, one of {sorted(DIGIT_DATASETS)}")
    parser.add_argument("--target", default="usps", help=f"target dataset, one of {sorted(DIGIT_DATASETS)}")
    parser.add_argument("--source_dir", default=None, help="local copy of the source (default: embedded subset)")
    parser.add_argument("--target_dir", default=None, help="local copy of the target (default: embedded subset)")
    parser.add_argument("--mode", default="dann", help=f"one of {MODES}")
    parser.add_argument("--architecture", default="improved", help=f"one of {ARCHITECTURES}")
    parser.add_argument(
        "--input_normalization",
        default="grey",
        choices=list(INPUT_NORMALIZATIONS),
        help="improved architecture: grey or per-channel per-image standardisation",
    )
    parser.add_argument(
        "--conv_channels",
        type=int,
        nargs=2,
        default=(32, 64),
        help="improved architecture: widths of the first two convolution blocks",
    )
    parser.add_argument("--output_dir", default="runs/dann-smoke")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--steps_per_epoch",
        type=int,
        default=None,
        help="cap on steps per epoch (default: one pass over the labelled training set)",
    )
    parser.add_argument("--batch_size", type=int, default=64, help="labelled images per step, all processes together")
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="Adam; the report used 3e-4")
    parser.add_argument(
        "--lr_schedule",
        default="constant",
        choices=["constant", "dann"],
        help="dann: mu_p = mu_0 / (1 + 10 p)^0.75 (Ganin et al.)",
    )
    parser.add_argument("--weight_decay", type=float, default=0.0)
    parser.add_argument("--augment", action="store_true", help="random rotation/zoom/shift of the training images")
    parser.add_argument("--aug_rotation", type=float, default=15.0)
    parser.add_argument("--aug_scale", type=float, nargs=2, default=(0.9, 1.5))
    parser.add_argument("--aug_translate", type=float, default=0.1)
    parser.add_argument(
        "--aug_invert",
        type=float,
        default=0.0,
        help="probability of inverting a training image (digit polarity), with --augment",
    )
    parser.add_argument(
        "--aug_channel_invert",
        type=float,
        default=0.0,
        help="probability of inverting each colour channel of a training image, with --augment",
    )
    parser.add_argument(
        "--aug_resample",
        type=float,
        default=0.0,
        help="probability of shrinking a training image to 12-24 px and enlarging it back "
        "(nearest or bilinear), with --augment",
    )
    parser.add_argument(
        "--aug_background",
        type=float,
        default=0.0,
        help="probability of blending a labelled training digit into a random colour texture, "
        "as MNIST-M was made from MNIST (light digits on dark ground), with --augment",
    )
    parser.add_argument(
        "--aug_thicken",
        type=float,
        default=0.0,
        help="probability of thickening a labelled training digit's light strokes by a pixel "
        "on every side, with --augment",
    )
    parser.add_argument("--entropy_weight", type=float, default=0.0, help="target entropy minimisation (dann mode)")
    parser.add_argument("--lambda_gamma", type=float, default=10.0)
    parser.add_argument("--lambda_max", type=float, default=1.0)
    parser.add_argument(
        "--target_aug_scale",
        type=float,
        nargs=2,
        default=(0.9, 1.1),
        help="mean_teacher: zoom of the student's target view (its rotation, shift and colour "
        "changes are the source's)",
    )
    parser.add_argument("--consistency_weight", type=float, default=1.0, help="mean_teacher: pseudo-label weight")
    parser.add_argument("--confidence_threshold", type=float, default=0.95, help="mean_teacher: pseudo-label cutoff")
    parser.add_argument("--ema_decay", type=float, default=0.99, help="mean_teacher: teacher moving-average decay")
    parser.add_argument(
        "--target_weight",
        type=float,
        default=0.1,
        help="vada: weight of the target conditional entropy + virtual adversarial divergence "
        "(ramped up with the reversal's lambda_p)",
    )
    parser.add_argument(
        "--vat_epsilon",
        type=float,
        default=3.5,
        help="vada: L2 radius of the virtual adversarial perturbation, on [-1, 1] images",
    )
    parser.add_argument(
        "--holdout_per_class",
        type=int,
        default=100,
        help="validation images per class held out of train when a dataset has no validation split",
    )
    parser.add_argument(
        "--adapt_bn",
        action="store_true",
        help="after training, re-estimate BatchNorm statistics on the unlabelled target train images",
    )
    parser.add_argument(
        "--adapt_bn_images",
        type=int,
        default=10000,
        help="AdaBN: at most this many target train images (a fixed random subset)",
    )
    parser.add_argument(
        "--eval_every",
        type=int,
        default=1,
        help="record the target validation accuracy every N epochs (and after the last)",
    )
    parser.add_argument("--eval_batch_size", type=int, default=1024)
    parser.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--checkpoint_every", type=int, default=1, help="save the training state every N epochs")
    parser.add_argument("--checkpoints_total_limit", type=int, default=2)
    parser.add_argument("--resume_from_checkpoint", default=None, help='"latest" or a checkpoint folder')
    parser.add_argument("--num_threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args) -> None:
    """Every bad value is refused here, before any data is read, by a message that names its flag."""
    check_seed(args.seed)
    for flag, value, allowed in (
        ("mode", args.mode, MODES),
        ("architecture", args.architecture, ARCHITECTURES),
        ("source", args.source, DIGIT_DATASETS),
        ("target", args.target, DIGIT_DATASETS),
    ):
        if value not in allowed:
            parser.error(f"unknown --{flag} {value!r}; choose one of {sorted(allowed)}")
    minimum = {
        "epochs": 1,
        "batch_size": 2,
        "eval_batch_size": 1,
        "eval_every": 1,
        "adapt_bn_images": 1,
        "checkpoint_every": 1,
        "checkpoints_total_limit": 1,
        "holdout_per_class": 1,
    }
    for flag, low in minimum.items():
        if getattr(args, flag) < low:
            parser.error(f"--{flag} must be at least {low}, got {getattr(args, flag)}")
    for flag in ("steps_per_epoch", "num_threads"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if not args.learning_rate > 0:
        parser.error(f"--learning_rate must be positive, got {args.learning_rate}")
    for flag in (
        "weight_decay",
        "entropy_weight",
        "consistency_weight",
        "target_weight",
        "vat_epsilon",
        "aug_rotation",
        "aug_translate",
    ):
        if getattr(args, flag) < 0:
            parser.error(f"--{flag} must not be negative, got {getattr(args, flag)}")
    for flag in (
        "aug_invert",
        "aug_channel_invert",
        "aug_resample",
        "aug_background",
        "aug_thicken",
        "confidence_threshold",
    ):
        if not 0.0 <= getattr(args, flag) <= 1.0:
            parser.error(f"--{flag} is a probability in [0, 1], got {getattr(args, flag)}")
    if not 0.0 <= args.ema_decay < 1.0:
        parser.error(f"--ema_decay must be in [0, 1), got {args.ema_decay}")
    if min(args.conv_channels) < 1:
        parser.error(f"--conv_channels needs two positive widths, got {args.conv_channels}")
    for flag in ("aug_scale", "target_aug_scale"):
        low, high = getattr(args, flag)
        if not 0 < low <= high:
            parser.error(f"--{flag} needs 0 < LOW <= HIGH, got {low} {high}")
