"""Train a class-conditional DDPM with classifier-free guidance on MNIST-M digits.

    accelerate launch training/train_cfg.py      # embedded MNIST-M subset, a few CPU minutes
    accelerate launch --multi_gpu --num_processes 2 training/train_cfg.py ...   # 2 CPU processes or 2 GPUs

The recipe of the shipped hub_cards/cfg-mnistm is in its README.md (`training_args.json` beside it).

The UNet sees 11 classes: digits 0-9 and a null class (id 10, stored as the pipeline's `null_class_id`)
that replaces the label with probability `--label_dropout` (0.1, as in the report) so that one network
learns both eps(x, c) and eps(x, null). The result is a `ConditionalDDPMPipeline` folder (model_index.json,
unet/ in safetensors, scheduler/: DPM-Solver++ on the trained schedule, the default sampler) with a model card
and a sample grid.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import diffusers
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, TorchDynamoPlugin, set_seed
from diffusers import DDIMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from diffusers.utils import make_image_grid
from tqdm.auto import tqdm

from adapters import decode_digits, load_digits
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import NUM_DIGITS, ConditionalDDPMPipeline
from pipelines.conditional_ddpm.schedulers import make_scheduler
from training.cfg_card import build_card, write_card
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
)
from training.diffusion_samples import log_sample_grid, out_of_time
from training.diffusion_step import (
    EpochSampler,
    StepRandomness,
    configure_device_speed,
    diffusion_loss,
    make_optimizer,
    to_model_input,
)

NULL_CLASS_ID = NUM_DIGITS  # label 10 = "no label"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(parser)
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
    parser.set_defaults(
        output_dir=Path("runs/cfg-mnistm"),
        resolution=28,
        num_train_timesteps=400,
        # The shipped model's UNet (0.17M parameters): small enough that 1000 digits x 400 guided
        # steps run on one CPU core in about half an hour.
        block_out_channels=[8, 16, 32],
        norm_num_groups=4,
        learning_rate=2e-3,
        lr_warmup_steps=300,
        max_train_steps=600,
        train_batch_size=64,
        checkpointing_steps=200,
        save_images_steps=300,
    )
    args = parser.parse_args(argv)
    if not 0 <= args.label_dropout < 1:
        raise ValueError(f"--label_dropout must be in [0, 1), got {args.label_dropout}")
    check_training_args(args)
    return args


def sample_grid_fn(noise_scheduler, args):
    """Digits 0-9 in rows, a few samples each, with fast DDIM sampling and a fixed seed."""

    def sample_grid(unet):
        pipe = ConditionalDDPMPipeline(unet, DDIMScheduler.from_config(noise_scheduler.config), NULL_CLASS_ID)
        pipe.set_progress_bar_config(disable=True)
        was_training = unet.training
        unet.eval()
        images = pipe(
            digit=list(range(NUM_DIGITS)),
            guidance=args.sample_guidance,
            num_images_per_digit=args.sample_images_per_digit,
            num_inference_steps=args.sample_inference_steps,
            generator=torch.Generator().manual_seed(args.seed),
        ).images
        unet.train(was_training)
        return make_image_grid(images, rows=NUM_DIGITS, cols=args.sample_images_per_digit)

    return sample_grid


def run_summary(args, result, num_images: int, num_params: int, accelerator) -> dict:
    """What the model card needs to know about this run beside its arguments (training_args.json)."""
    summary = {k: v for k, v in vars(result).items() if k != "unet"}
    device = accelerator.device
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"
    summary.update(
        num_images=num_images,
        num_params=num_params,
        data=args.train_data or "hub_cards/mnistm-mini (the embedded 2,000-image subset)",
        hardware=f"{accelerator.num_processes} x {hardware}; PyTorch {torch.__version__}, diffusers "
        f"{diffusers.__version__}, {args.mixed_precision} mixed precision",
        samples_caption=f"rows are digits 0-9, DDIM {args.sample_inference_steps} steps, w = {args.sample_guidance}, "
        f"seed {args.seed}.",
    )
    return summary


def main(args: argparse.Namespace) -> TrainResult:
    start = time.perf_counter()  # the wall-time budget counts data loading too
    output_dir = args.output_dir
    # Read the data before anything is created on disk: a bad --train_data must leave no output folder behind.
    dataset = load_digits("mnistm", source=args.train_data, split="train")
    images, labels = decode_digits(dataset, image_size=args.resolution)
    if args.max_train_images is not None:
        images, labels = images[: args.max_train_images], labels[: args.max_train_images]
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
    images, labels = images.to(device), labels.to(device)

    # 2. model, EMA (the sampling weights; warm-up so the random init fades fast), optimizer, schedule
    torch.manual_seed(args.seed)
    unet = build_unet(args, channels=3, num_class_embeds=NUM_DIGITS + 1)
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
            clean = to_model_input(images[index], args.channels_last)
            with accelerator.accumulate(unet), accelerator.autocast():
                loss = diffusion_loss(
                    unet,
                    noise_scheduler,
                    clean,
                    labels[index],
                    randomness.for_micro_step(micro_step),
                    args.label_dropout,
                    NULL_CLASS_ID,
                )
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

    # 5. export the EMA weights as a ConditionalDDPMPipeline folder, written atomically
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
        # The folder's scheduler is the sampler `pipe(digit=3)` uses: DPM-Solver++ on the trained schedule, good
        # digits in 10 steps; `make_scheduler("ddpm", pipe.scheduler.config)` restores the training sampler.
        pipeline = ConditionalDDPMPipeline(model.eval(), make_scheduler("dpm", noise_scheduler.config), NULL_CLASS_ID)
        pipeline.save_pretrained(staging, safe_serialization=True)
        sample_grid(model).save(staging / "samples.png")
        (staging / "training_args.json").write_text(training_args_json(args))
        num_params = sum(p.numel() for p in model.parameters())
        summary = run_summary(args, result, len(images), num_params, accelerator)
        (staging / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_card(staging, build_card(staging, repo=args.hub_model_id))

    publish(output_dir, write_export)
    accelerator.print(f"saved the pipeline to {output_dir}")
    if args.push_to_hub:
        accelerator.print(f"pushed: {push_folder_to_hub(output_dir, args.hub_model_id)}")
    return result


if __name__ == "__main__":
    from pipelines.command_line import run_command  # user errors: one line on stderr, exit status 2

    run_command(main, parse_args)
