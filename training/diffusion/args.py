"""The flags of `train_cfg.py` and `train_ddpm.py`, and the UNet and noise schedule they describe.

Both scripts take every flag of `add_training_args` with the same meaning; each adds the flags of its model
kind (`add_conditional_args` / `add_unconditional_args`), which also set the defaults that differ between the
two (`KIND_DEFAULTS`: resolution, T, UNet widths, steps...).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from diffusers import DDPMScheduler, UNet2DModel

from pipelines.command_line import check_seed

EMBEDDED_DIGITS = Path(__file__).resolve().parents[2] / "hub_cards" / "mnistm-mini" / "data"

# The defaults that differ between the two scripts: flag -> (train_cfg.py, train_ddpm.py). train_cfg.py's UNet has
# 0.17M parameters, so that its no-argument run is a CPU smoke test of a few minutes; the shipped conditional models
# are wider (cfg-mnistm 3.94M, cfg-mnistm-small 0.99M parameters; their flags are in their training_args.json).
KIND_DEFAULTS = {
    "output_dir": (Path("runs/cfg-mnistm"), Path("runs/ddpm")),
    "resolution": (28, 32),
    "num_train_timesteps": (400, 1000),
    "block_out_channels": ([8, 16, 32], [16, 32, 64]),
    "norm_num_groups": (4, 8),
    "learning_rate": (2e-3, 1e-3),
    "lr_warmup_steps": (300, 50),
    "max_train_steps": (600, 200),
    "train_batch_size": (64, 32),
    "checkpointing_steps": (200, 100),
    "save_images_steps": (300, 100),
}


# Flags a resumed or repeated run may change and still be the same run (training/run_folder.py): where it is
# written and shown, how long it runs, how often it saves and logs, how fast it computes, its logged grids.
FREE_FLAGS = (
    "output_dir",
    "resume_from_checkpoint",
    "max_train_steps",
    "max_train_seconds",
    "checkpointing_steps",
    "checkpoints_total_limit",
    "logging_steps",
    "save_images_steps",
    "report_to",
    "push_to_hub",
    "hub_model_id",
    "channels_last",
    "compile",
    "compile_mode",
    "sample_guidance",
    "sample_images_per_digit",
    "sample_images",
    "sample_inference_steps",
)


def add_training_args(parser: argparse.ArgumentParser) -> None:
    """Arguments common to both diffusion training scripts; those without a default take it from KIND_DEFAULTS."""
    parser.add_argument("--output_dir", type=Path, help="Hub-style folder; checkpoints go inside")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resolution", type=int, help="images are resized to this square size")
    parser.add_argument("--num_train_timesteps", type=int, help="T of the DDPM schedule")
    parser.add_argument("--beta_start", type=float, default=1e-4)
    parser.add_argument("--beta_end", type=float, default=0.02)
    parser.add_argument("--block_out_channels", type=int, nargs="+")
    parser.add_argument("--layers_per_block", type=int, default=1)
    parser.add_argument("--norm_num_groups", type=int)
    parser.add_argument("--train_batch_size", type=int, help="per process, per micro-step")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--max_train_steps", type=int, help="optimizer steps")
    parser.add_argument(
        "--max_train_seconds",
        type=float,
        default=None,
        help="stop early once this much wall time (data loading included) has passed; the learning-rate "
        "schedule still spans --max_train_steps. Breaks bit-exact reproducibility (the stop depends on speed)",
    )
    parser.add_argument("--learning_rate", type=float)
    parser.add_argument("--lr_scheduler", default="cosine", help="any diffusers.optimization schedule name")
    parser.add_argument("--lr_warmup_steps", type=int)
    parser.add_argument("--adam_weight_decay", type=float, default=0.0)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--ema_max_decay", type=float, default=0.999)
    parser.add_argument("--ema_power", type=float, default=3 / 4, help="EMA warm-up: decay = 1 - (1 + step)^-power")
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default="no")
    # GPU speed switches. Off by default where they change results on the CPU or are not yet measured.
    parser.add_argument(
        "--channels_last", action="store_true", help="UNet weights and inputs in NHWC (faster convolutions on GPUs)"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (accelerate's dynamo plugin)")
    parser.add_argument(
        "--compile_mode",
        default=None,
        help="torch.compile mode, e.g. reduce-overhead (CUDA graphs) or max-autotune-no-cudagraphs",
    )
    parser.add_argument("--checkpointing_steps", type=int)
    parser.add_argument("--checkpoints_total_limit", type=int, default=3)
    parser.add_argument(
        "--resume_from_checkpoint", default=None, help="a checkpoint-N folder, or 'latest' in --output_dir"
    )
    parser.add_argument("--logging_steps", type=int, default=50, help="the only steps that read the loss back")
    parser.add_argument("--save_images_steps", type=int, help="log a sample grid this often")
    parser.add_argument(
        "--report_to",
        choices=["tensorboard", "none"],
        default="tensorboard" if importlib.util.find_spec("tensorboard") else "none",
    )
    parser.add_argument("--push_to_hub", action="store_true", help="upload the final folder (needs network)")
    parser.add_argument("--hub_model_id", default=None, help="repo id for --push_to_hub")


def add_conditional_args(parser: argparse.ArgumentParser) -> None:
    """train_cfg.py: MNIST-M digits with their labels, label dropout, guided sample grids."""
    parser.add_argument(
        "--train_data",
        default=None,
        help="MNIST-M source for adapters.load_digits (parquet folder, course layout, Hub id); "
        "default: the embedded subset hub_cards/mnistm-mini",
    )
    parser.add_argument("--label_dropout", type=float, default=0.1, help="probability of the null label")
    parser.add_argument("--max_train_images", type=int, default=None, help="use only the first N images")
    parser.add_argument("--sample_guidance", type=float, default=2.0, help="w of the logged sample grids")
    parser.add_argument("--sample_images_per_digit", type=int, default=4)
    parser.add_argument("--sample_inference_steps", type=int, default=50, help="DDIM steps of the logged grids")
    parser.set_defaults(**{flag: defaults[0] for flag, defaults in KIND_DEFAULTS.items()})


def add_unconditional_args(parser: argparse.ArgumentParser) -> None:
    """train_ddpm.py: a folder of images without labels."""
    parser.add_argument(
        "--train_data",
        type=Path,
        default=EMBEDDED_DIGITS,
        help="parquet folder (column `image`) or image folder; default: embedded MNIST-M subset",
    )
    parser.add_argument("--channels", type=int, choices=[1, 3], default=3, help="1 = greyscale, 3 = RGB")
    parser.add_argument("--sample_images", type=int, default=16, help="images in the logged sample grids")
    parser.add_argument("--sample_inference_steps", type=int, default=50, help="DDIM steps of the logged grids")
    parser.add_argument(
        "--random_flip",
        action="store_true",
        help="mirror each training image left-right with probability 1/2 (doubles a small face set)",
    )
    parser.set_defaults(**{flag: defaults[1] for flag, defaults in KIND_DEFAULTS.items()})


def conditional_defaults() -> dict:
    """Every train_cfg.py flag at its default, as recorded in training_args.json (paths as strings)."""
    parser = argparse.ArgumentParser()
    add_training_args(parser)
    add_conditional_args(parser)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(parser.parse_args([])).items()}


def check_training_args(args: argparse.Namespace) -> None:
    positive = [
        "resolution",
        "num_train_timesteps",
        "train_batch_size",
        "gradient_accumulation_steps",
        "max_train_steps",
        "checkpointing_steps",
        "logging_steps",
        "save_images_steps",
    ]
    for name in positive:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.max_train_seconds is not None and not args.max_train_seconds > 0:
        raise ValueError(f"--max_train_seconds must be > 0, got {args.max_train_seconds}")
    if any(c % args.norm_num_groups for c in args.block_out_channels):
        raise ValueError(f"--block_out_channels {args.block_out_channels} must be multiples of --norm_num_groups")
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id (e.g. user/cfg-mnistm)")
    check_seed(args.seed)


def build_unet(args: argparse.Namespace, channels: int, num_class_embeds: int | None = None) -> UNet2DModel:
    """A UNet2DModel with self-attention only at the lowest resolution and mid block, where it is cheap."""
    levels = len(args.block_out_channels)
    return UNet2DModel(
        sample_size=args.resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(args.block_out_channels),
        layers_per_block=args.layers_per_block,
        norm_num_groups=args.norm_num_groups,
        down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
        num_class_embeds=num_class_embeds,
    )


def build_noise_scheduler(args: argparse.Namespace) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=args.num_train_timesteps,
        beta_schedule="linear",
        beta_start=args.beta_start,
        beta_end=args.beta_end,
    )
