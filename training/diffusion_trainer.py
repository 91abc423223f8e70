"""The training loop shared by `train_cfg.py` (class-conditional) and `train_ddpm.py` (unconditional).

One job: fit a `UNet2DModel` to predict the noise eps of a DDPM forward process (Ho et al., 2020, Alg. 1)
on a uint8 image tensor decoded once into memory. Features enter where marked: accelerate (devices,
mixed precision, gradient accumulation, multi-process), EMA weights, `checkpoint-N` folders with a
limit, exact resume, TensorBoard logging, and a Hub-style export written atomically.

Exact resume: the randomness of micro-batch i (which images, which t, which noise, which labels are
dropped) is a pure function of (seed, process index, i). Resuming from `checkpoint-N` therefore replays
exactly what an uninterrupted run would have done, with no generator state to save.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from PIL import Image
from tqdm.auto import tqdm

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def add_training_args(parser: argparse.ArgumentParser) -> None:
    """Arguments common to every diffusion training script; each script sets the defaults left as None."""
    parser.add_argument("--output_dir", type=Path, help="Hub-style folder; checkpoints go inside")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resolution", type=int, help="images are resized to this square size")
    parser.add_argument("--num_train_timesteps", type=int, help="T of the DDPM schedule")
    parser.add_argument("--beta_start", type=float, default=1e-4)
    parser.add_argument("--beta_end", type=float, default=0.02)
    parser.add_argument("--block_out_channels", type=int, nargs="+")
    parser.add_argument("--layers_per_block", type=int, default=1)
    parser.add_argument("--norm_num_groups", type=int, default=8)
    parser.add_argument("--train_batch_size", type=int, default=64, help="per process, per micro-step")
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--max_train_steps", type=int, help="optimizer steps")
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--lr_scheduler", default="cosine", help="any diffusers.optimization schedule name")
    parser.add_argument("--lr_warmup_steps", type=int, default=200)
    parser.add_argument("--adam_weight_decay", type=float, default=0.0)
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    parser.add_argument("--ema_max_decay", type=float, default=0.999)
    parser.add_argument(
        "--ema_power", type=float, default=3 / 4, help="EMA warm-up: decay = 1 - (1 + step)^-power"
    )
    parser.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default="no")
    parser.add_argument("--checkpointing_steps", type=int, default=500)
    parser.add_argument("--checkpoints_total_limit", type=int, default=3)
    parser.add_argument(
        "--resume_from_checkpoint", default=None, help="a checkpoint-N folder, or 'latest' in --output_dir"
    )
    parser.add_argument("--logging_steps", type=int, default=50)
    parser.add_argument("--save_images_steps", type=int, default=1000, help="log a sample grid this often")
    parser.add_argument(
        "--report_to",
        choices=["tensorboard", "none"],
        default="tensorboard" if importlib.util.find_spec("tensorboard") else "none",
    )
    parser.add_argument("--push_to_hub", action="store_true", help="upload the final folder (needs network)")
    parser.add_argument("--hub_model_id", default=None, help="repo id for --push_to_hub")


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
    if any(c % args.norm_num_groups for c in args.block_out_channels):
        raise ValueError(
            f"--block_out_channels {args.block_out_channels} must be multiples of --norm_num_groups"
        )
    if args.push_to_hub and not args.hub_model_id:
        raise ValueError("--push_to_hub needs --hub_model_id (e.g. user/cfg-mnistm)")


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


def micro_step_generator(seed: int, process_index: int, micro_step: int) -> torch.Generator:
    """A generator seeded by (seed, process, micro-step) alone: the key to exact resume."""
    state = np.random.SeedSequence([seed, process_index, micro_step]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass
class EpochSampler:
    """Batches that walk a fresh permutation every epoch, split across processes."""

    num_examples: int
    batch_size: int
    num_processes: int
    process_index: int
    seed: int

    def __post_init__(self):
        self.batches_per_epoch = self.num_examples // (self.batch_size * self.num_processes)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{self.num_examples} training images cannot fill one batch of {self.batch_size} "
                f"on each of {self.num_processes} processes; lower --train_batch_size"
            )
        self._epoch, self._permutation = -1, None

    def indices(self, micro_step: int) -> torch.Tensor:
        epoch, batch = divmod(micro_step, self.batches_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._epoch, self._permutation = epoch, torch.randperm(self.num_examples, generator=generator)
        start = (batch * self.num_processes + self.process_index) * self.batch_size
        return self._permutation[start : start + self.batch_size]


def diffusion_loss(
    unet, noise_scheduler, clean, class_labels, generator, label_dropout=0.0, null_class_id=None
):
    """MSE between the true and the predicted noise at a uniformly drawn t (DDPM Alg. 1).

    With `label_dropout` > 0, that fraction of labels becomes `null_class_id`, which teaches the same
    network the unconditional model that classifier-free guidance needs.
    """
    batch = clean.shape[0]
    noise = torch.randn(clean.shape, generator=generator).to(clean.device)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), generator=generator)
    if class_labels is not None and label_dropout > 0:
        dropped = torch.rand(batch, generator=generator) < label_dropout
        class_labels = torch.where(dropped.to(class_labels.device), null_class_id, class_labels)
    timesteps = timesteps.to(clean.device)
    noisy = noise_scheduler.add_noise(clean, noise, timesteps)
    noise_pred = unet(noisy, timesteps, class_labels=class_labels).sample
    return F.mse_loss(noise_pred.float(), noise.float())


def list_checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return sorted(found)


def resolve_checkpoint(resume: str | None, output_dir: Path) -> tuple[int, Path] | None:
    """'latest' -> the newest checkpoint-N in output_dir (None when there is none yet); a path -> itself."""
    if resume is None:
        return None
    if resume == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume)
    match = CHECKPOINT_PATTERN.match(path.name)
    if not path.is_dir() or not match:
        raise FileNotFoundError(f"--resume_from_checkpoint {resume!r} is not a checkpoint-N folder")
    return int(match.group(1)), path


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, total_limit: int | None) -> None:
    """save_state('checkpoint-N'), first deleting the oldest so at most `total_limit` remain.

    accelerate's own total_limit only applies to its automatic `checkpoints/checkpoint_i` naming, so the
    limit on the diffusers-style `checkpoint-N` names is kept here.
    """
    if accelerator.is_main_process and total_limit is not None:
        existing = list_checkpoints(output_dir)
        for _, old in existing[: max(0, len(existing) - total_limit + 1)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(output_dir / f"checkpoint-{step}"))


def make_grid(images: list[Image.Image], columns: int) -> Image.Image:
    width, height = images[0].size
    rows = math.ceil(len(images) / columns)
    grid = Image.new("RGB", (columns * width, rows * height))
    for i, image in enumerate(images):
        grid.paste(image.convert("RGB"), ((i % columns) * width, (i // columns) * height))
    return grid


def publish_folder(staging: Path, output_dir: Path) -> None:
    """Move every entry of `staging` into `output_dir`, each with one rename (nothing half-written)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for entry in sorted(staging.iterdir()):
        target = output_dir / entry.name
        if target.is_dir():
            retired = output_dir / f".retired-{entry.name}"
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(target, retired)
            os.replace(entry, target)
            shutil.rmtree(retired)
        else:
            os.replace(entry, target)
    staging.rmdir()


def write_model_card(path: Path, front_matter: dict, body: str) -> None:
    text = "---\n" + yaml.safe_dump(front_matter, sort_keys=False) + "---\n\n" + body.strip() + "\n"
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def push_folder_to_hub(folder: Path, repo_id: str) -> str:
    """Upload the exported folder (not the checkpoints). Offline, fail clearly; the local folder stays."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    if os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE"):
        raise ConnectionError(
            f"--push_to_hub needs the network but HF_HUB_OFFLINE is set; {folder} is saved locally"
        )
    api = HfApi()
    try:
        api.create_repo(repo_id, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=folder, ignore_patterns=["checkpoint-*", "logs/*", "samples/*", ".*"]
        )
    except (OSError, OfflineModeIsEnabled) as error:
        raise ConnectionError(
            f"could not push {folder} to the Hub ({error}); the local folder is intact"
        ) from error
    return commit.commit_url


@dataclass
class TrainResult:
    unet: UNet2DModel  # unwrapped, holding the EMA weights
    final_loss: float
    loss_history: list[tuple[int, float]]  # (step, mean loss since the previous log)
    global_step: int
    images_seen: int
    seconds: float
    num_processes: int


def train_diffusion(
    args: argparse.Namespace,
    unet: UNet2DModel,
    noise_scheduler: DDPMScheduler,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    sample_grid: Callable[[UNet2DModel], Image.Image],
    label_dropout: float = 0.0,
    null_class_id: int | None = None,
) -> tuple[Accelerator, TrainResult]:
    """Train `unet` on uint8 `images` [N, C, H, W] (and `labels` [N] when class-conditional).

    `sample_grid(unet)` draws a grid of samples from the EMA weights for the logs. Returns the
    accelerator (the caller exports on the main process) and a summary whose unet holds the EMA weights.
    """
    check_training_args(args)
    output_dir = args.output_dir
    # Without CUDA, cpu=True makes `accelerate launch --multi_gpu` / torchrun processes join one gloo group.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(
            project_dir=str(output_dir), logging_dir=str(output_dir / "logs")
        ),
    )
    set_seed(args.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        accelerator.init_trackers("train", config={k: str(v) for k, v in vars(args).items()})

    # EMA: the sampling weights; warm-up so early steps are not dominated by the random init.
    ema = EMAModel(unet.parameters(), decay=args.ema_max_decay, use_ema_warmup=True, power=args.ema_power)
    optimizer = torch.optim.AdamW(
        unet.parameters(), lr=args.learning_rate, weight_decay=args.adam_weight_decay
    )
    # The prepared scheduler steps once per process per optimizer step, hence the scaling.
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema)

    global_step = 0
    checkpoint = resolve_checkpoint(args.resume_from_checkpoint, output_dir)
    if checkpoint is not None:
        global_step, path = checkpoint
        accelerator.load_state(str(path))
        accelerator.print(f"resumed from {path} at step {global_step}")

    sampler = EpochSampler(
        len(images), args.train_batch_size, accelerator.num_processes, accelerator.process_index, args.seed
    )
    images_per_step = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    progress = tqdm(
        range(args.max_train_steps),
        initial=global_step,
        desc="steps",
        disable=not accelerator.is_local_main_process,
    )

    def log_samples(step: int) -> None:
        if accelerator.is_main_process:
            model = accelerator.unwrap_model(unet)
            ema.store(model.parameters())
            ema.copy_to(model.parameters())
            grid = sample_grid(model)
            ema.restore(model.parameters())
            (output_dir / "samples").mkdir(exist_ok=True)
            grid.save(output_dir / "samples" / f"step-{step:06d}.png")
            for tracker in accelerator.trackers:
                if tracker.name == "tensorboard":
                    tracker.writer.add_image("samples", np.asarray(grid), step, dataformats="HWC")
        accelerator.wait_for_everyone()

    start, running_loss, loss_count, last_loss, loss_history = time.time(), 0.0, 0, float("nan"), []
    unet.train()
    while global_step < args.max_train_steps:
        micro_step = global_step * args.gradient_accumulation_steps
        for _ in range(args.gradient_accumulation_steps):
            generator = micro_step_generator(args.seed, accelerator.process_index, micro_step)
            index = sampler.indices(micro_step)
            clean = images[index].to(accelerator.device).float().div(127.5).sub(1.0)
            class_labels = labels[index].to(accelerator.device) if labels is not None else None
            with accelerator.accumulate(unet), accelerator.autocast():
                loss = diffusion_loss(
                    unet, noise_scheduler, clean, class_labels, generator, label_dropout, null_class_id
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(unet.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            running_loss, loss_count = running_loss + loss.item(), loss_count + 1
            micro_step += 1

        ema.step(unet.parameters())
        global_step += 1
        progress.update(1)
        if global_step % args.logging_steps == 0 or global_step == args.max_train_steps:
            last_loss = accelerator.reduce(
                torch.tensor(running_loss / loss_count, device=accelerator.device), reduction="mean"
            ).item()
            running_loss, loss_count = 0.0, 0
            loss_history.append((global_step, last_loss))
            logs = {"loss": last_loss, "lr": lr_scheduler.get_last_lr()[0], "ema_decay": ema.cur_decay_value}
            progress.set_postfix(loss=f"{last_loss:.4f}")
            accelerator.log(logs, step=global_step)
        if global_step % args.checkpointing_steps == 0:
            save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
        if global_step % args.save_images_steps == 0:
            log_samples(global_step)
    progress.close()

    model = accelerator.unwrap_model(unet)
    ema.copy_to(model.parameters())
    accelerator.wait_for_everyone()
    accelerator.end_training()
    result = TrainResult(
        unet=model,
        final_loss=last_loss,
        loss_history=loss_history,
        global_step=global_step,
        images_seen=global_step * images_per_step,
        seconds=time.time() - start,
        num_processes=accelerator.num_processes,
    )
    if accelerator.is_main_process:
        summary = {k: v for k, v in vars(result).items() if k != "unet"}
        (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return accelerator, result
