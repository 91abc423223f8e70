"""Train an unconditional DDPM (Ho et al., 2020) on a folder of images, e.g. the 100 LFW faces.

    accelerate launch training/train_ddpm.py      # embedded MNIST-M subset as plain images, a minute
    accelerate launch training/train_ddpm.py --train_data ../shared/data/lfw_faces --channels 1 \\
        --resolution 32 --output_dir runs/ddpm-faces --max_train_steps 3000

`--train_data` is a folder of parquet files with an `image` column (files named train*.parquet are
preferred when present) or a folder of image files. The output folder is a `DDPMPipeline`:
unet/ (safetensors), scheduler/ (linear betas, `--num_train_timesteps`), model_index.json, README.md.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, TorchDynamoPlugin, set_seed
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from diffusers.utils import make_image_grid
from huggingface_hub import EvalResult
from PIL import Image
from tqdm.auto import tqdm

from pipelines.hub.cards import card_data, diffusion_usage_snippets, usage_section
from training.diffusion_args import (
    add_training_args,
    build_noise_scheduler,
    build_unet,
    check_training_args,
)
from training.diffusion_checkpoints import register_ema_hooks, resolve_checkpoint, save_checkpoint
from training.diffusion_export import (
    TrainResult,
    finish_training,
    publish,
    push_folder_to_hub,
    training_args_json,
    write_model_card,
)
from training.diffusion_samples import log_sample_grid, out_of_time
from training.diffusion_step import (
    EpochSampler,
    StepRandomness,
    configure_device_speed,
    diffusion_loss,
    make_optimizer,
    random_flip,
    to_model_input,
)

EMBEDDED_DIGITS = Path(__file__).resolve().parents[1] / "hub_cards" / "mnistm-mini" / "data"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(parser)
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
    parser.set_defaults(
        output_dir=Path("runs/ddpm"),
        resolution=32,
        num_train_timesteps=1000,
        block_out_channels=[16, 32, 64],
        max_train_steps=200,
        train_batch_size=32,
        lr_warmup_steps=50,
        checkpointing_steps=100,
        save_images_steps=100,
    )
    args = parser.parse_args(argv)
    check_training_args(args)
    return args


def _parquet_images(folder: Path) -> list[Image.Image]:
    files = sorted(folder.rglob("train*.parquet")) or sorted(folder.rglob("*.parquet"))
    table = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    if "image" not in table.column_names:
        raise ValueError(f"{folder}: parquet files have no `image` column (columns: {table.column_names})")
    raw = table.cast_column("image", datasets.Image(decode=False))["image"]
    return [Image.open(io.BytesIO(value["bytes"])) if value["bytes"] else Image.open(value["path"]) for value in raw]


def load_training_images(folder: Path, resolution: int, channels: int) -> torch.Tensor:
    """All images of `folder` as uint8 [N, channels, resolution, resolution] (bicubic resize)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"--train_data {folder} is not a folder")
    if any(folder.rglob("*.parquet")):
        pictures = _parquet_images(folder)
    else:
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        pictures = [Image.open(p) for p in paths]
    if not pictures:
        raise FileNotFoundError(f"--train_data {folder} holds no parquet files and no images")
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(p.convert(mode).resize((resolution, resolution), Image.BICUBIC)) for p in pictures]
    stacked = torch.from_numpy(np.stack(arrays))
    return stacked.unsqueeze(1) if channels == 1 else stacked.permute(0, 3, 1, 2).contiguous()


def sample_grid_fn(noise_scheduler, args):
    def sample_grid(unet):
        pipe = DDIMPipeline(unet, DDIMScheduler.from_config(noise_scheduler.config))
        pipe.set_progress_bar_config(disable=True)
        was_training = unet.training
        unet.eval()
        images = pipe(
            batch_size=args.sample_images,
            num_inference_steps=args.sample_inference_steps,
            generator=torch.Generator().manual_seed(args.seed),
        ).images
        unet.train(was_training)
        columns = int(np.ceil(np.sqrt(args.sample_images)))
        rows = int(np.ceil(args.sample_images / columns))
        # make_image_grid wants a full grid: pad the last row with black tiles
        images += [Image.new(images[0].mode, images[0].size)] * (rows * columns - len(images))
        return make_image_grid(images, rows=rows, cols=columns)

    return sample_grid


def model_card(args, result, num_images: int, num_params: int) -> tuple[dict, str]:
    """(front matter, body) of the output folder's card, a plain diffusers `DDPMPipeline`."""
    data_ref = str(args.train_data)
    hub_dataset = [data_ref] if len(data_ref.split("/")) == 2 and not Path(data_ref).exists() else []
    loss = EvalResult(
        task_type="unconditional-image-generation",
        dataset_type=hub_dataset[0] if hub_dataset else "local",
        dataset_name=f"{data_ref} (training images)",
        dataset_split="train",
        metric_type="loss",
        metric_name="final training loss (noise MSE)",
        metric_value=round(float(result.final_loss), 4),
    )
    data = card_data(
        library_name="diffusers",
        pipeline_tag="unconditional-image-generation",
        datasets=hub_dataset,
        model_name=Path(args.output_dir).name,
        eval_results=[loss],
        metrics=["loss"],
        tags=["diffusers", "ddpm", "unconditional-image-generation"],
    )
    repo_snippet, library_snippet = diffusion_usage_snippets(str(args.output_dir), "DDPMPipeline")
    use = usage_section(repo_snippet, library_snippet, "diffusers")
    body = f"""
# Unconditional DDPM

A `UNet2DModel` ({num_params / 1e6:.2f}M parameters) trained by `training/train_ddpm.py` to predict the
noise of a {args.num_train_timesteps}-step DDPM schedule (linear betas {args.beta_start} -> {args.beta_end}).
The folder is a plain diffusers `DDPMPipeline` (no code of its own); `UNet2DModel.from_pretrained(folder,
subfolder="unet")` and `DDIMScheduler.from_pretrained(folder, subfolder="scheduler")` load its parts.

| setting | value |
|---|---|
| data | {args.train_data}: {num_images} images, {args.resolution} px, {args.channels} channel(s) |
| steps x images per step | {result.global_step} x {result.images_seen // max(result.global_step, 1)} \
({result.images_seen / num_images:.1f} epochs) |
| optimizer | AdamW lr {args.learning_rate}, {args.lr_scheduler}, {args.lr_warmup_steps} warm-up steps |
| EMA | max decay {args.ema_max_decay} (the saved weights) |
| UNet | block_out_channels {tuple(args.block_out_channels)}, layers_per_block {args.layers_per_block} |
| final training loss (metric) | {result.final_loss:.4f} |
| training time / processes | {result.seconds / 60:.1f} min / {result.num_processes} |

{use}
![samples](samples.png)

`samples.png`: DDIM {args.sample_inference_steps} steps, eta 0, seed {args.seed}.
"""
    return data.to_dict(), body


def main(args: argparse.Namespace) -> TrainResult:
    start = time.perf_counter()  # the wall-time budget counts data loading too
    output_dir = args.output_dir
    # Read the data before anything is created on disk: a bad --train_data must leave no output folder behind.
    images = load_training_images(args.train_data, args.resolution, args.channels)
    # Without CUDA, cpu=True makes `accelerate launch --multi_gpu` / torchrun processes join one gloo group.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        dynamo_plugin=TorchDynamoPlugin(backend="inductor" if args.compile else "no", mode=args.compile_mode),
    )
    configure_device_speed()
    set_seed(args.seed)
    device = accelerator.device
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        accelerator.init_trackers("train", config={k: str(v) for k, v in vars(args).items()})

    # 1. data: decoded once (above), kept on the training device as uint8; a batch is an index into it
    images = images.to(device)

    # 2. model, EMA (the sampling weights; warm-up so the random init fades fast), optimizer, schedule
    torch.manual_seed(args.seed)
    unet = build_unet(args, channels=args.channels)
    if args.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    noise_scheduler = build_noise_scheduler(args)
    ema = EMAModel(
        unet.parameters(),
        decay=args.ema_max_decay,
        use_ema_warmup=True,
        power=args.ema_power,
        foreach=True,  # one kernel per update instead of one per tensor
        model_cls=UNet2DModel,
        model_config=unet.config,
    )
    optimizer = make_optimizer(unet.parameters(), args, device)
    # accelerate steps a prepared scheduler once per process per optimizer step, hence the scaling.
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    ema.to(device)
    register_ema_hooks(accelerator, ema)

    # 3. resume: the step comes from the checkpoint-N name; the randomness of every later step from it
    global_step = 0
    checkpoint = resolve_checkpoint(args.resume_from_checkpoint, output_dir)
    if checkpoint is not None:
        global_step, path = checkpoint
        accelerator.load_state(str(path))
        accelerator.print(f"resumed from {path} at step {global_step}")

    sampler = EpochSampler(
        len(images), args.train_batch_size, accelerator.num_processes, accelerator.process_index, args.seed, device
    )
    randomness = StepRandomness(args.seed, accelerator.process_index, device)
    sample_grid = sample_grid_fn(noise_scheduler, args)
    progress = tqdm(
        range(args.max_train_steps), initial=global_step, desc="steps", disable=not accelerator.is_local_main_process
    )

    # 4. the loop. Nothing in it reads a value back from the device except at logging steps.
    loss_sum, loss_count, last_loss, loss_history = torch.zeros((), device=device), 0, float("nan"), []
    stopped_by_time = False
    unet.train()
    while global_step < args.max_train_steps:
        micro_step = global_step * args.gradient_accumulation_steps
        for _ in range(args.gradient_accumulation_steps):
            index = sampler.indices(micro_step)
            generator = randomness.for_micro_step(micro_step)
            clean = to_model_input(images[index], args.channels_last)
            if args.random_flip:
                clean = random_flip(clean, generator)
            with accelerator.accumulate(unet), accelerator.autocast():
                loss = diffusion_loss(unet, noise_scheduler, clean, None, generator)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(unet.parameters(), args.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach().float()
            loss_count += 1
            micro_step += 1

        ema.step(unet.parameters())
        global_step += 1
        progress.update(1)
        if global_step % args.logging_steps == 0 or global_step == args.max_train_steps:
            stopped_by_time = out_of_time(accelerator, start, args.max_train_seconds)
            last_loss = accelerator.reduce(loss_sum / loss_count, reduction="mean").item()
            loss_sum, loss_count = torch.zeros((), device=device), 0
            loss_history.append((global_step, last_loss))
            progress.set_postfix(loss=f"{last_loss:.4f}")
            logs = {"loss": last_loss, "lr": lr_scheduler.get_last_lr()[0], "ema_decay": ema.cur_decay_value}
            accelerator.log(logs, step=global_step)
        if global_step % args.checkpointing_steps == 0:
            save_checkpoint(accelerator, output_dir, global_step, args.checkpoints_total_limit)
        if global_step % args.save_images_steps == 0:
            log_sample_grid(accelerator, unet, ema, sample_grid, output_dir, global_step)
        if stopped_by_time:
            accelerator.print(f"--max_train_seconds {args.max_train_seconds} reached at step {global_step}")
            break
    progress.close()

    # 5. export the EMA weights as a DDPMPipeline folder, written atomically
    result = finish_training(
        accelerator,
        unet,
        ema,
        args,
        start=start,
        last_loss=last_loss,
        loss_history=loss_history,
        global_step=global_step,
        stopped_by_time=stopped_by_time,
    )
    if not accelerator.is_main_process:
        return result
    model = result.unet

    def write_export(staging: Path) -> None:
        DDPMPipeline(model.eval(), noise_scheduler).save_pretrained(staging, safe_serialization=True)
        sample_grid(model).save(staging / "samples.png")
        (staging / "training_args.json").write_text(training_args_json(args))
        num_params = sum(p.numel() for p in model.parameters())
        write_model_card(staging / "README.md", *model_card(args, result, len(images), num_params))

    publish(output_dir, write_export)
    accelerator.print(f"saved the pipeline to {output_dir}")
    if args.push_to_hub:
        accelerator.print(f"pushed: {push_folder_to_hub(output_dir, args.hub_model_id)}")
    return result


if __name__ == "__main__":
    from pipelines.command_line import run_command  # user errors: one line on stderr, exit status 2

    run_command(main, parse_args)
