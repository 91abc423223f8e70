"""The one training loop of `train_cfg.py` and `train_ddpm.py`: a DDPM (Ho et al., 2020, Alg. 1) with EMA weights.

The conditional model (train_cfg.py) is the unconditional one (train_ddpm.py) plus class embeddings and label
dropout: with `labels`, the UNet gets `null_class_id + 1` class embeddings and each label becomes
`null_class_id` with probability `label_dropout`, so that one network learns eps(x, c) and eps(x, null).
Everything else (data on the device, randomness from (seed, process, micro-step), accumulation, EMA,
checkpoints, logs, time budget, the exported folder) is one code path; `ModelKind` says what differs.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import diffusers
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, TorchDynamoPlugin, set_seed
from diffusers import UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from training.checkpoints import (
    find_checkpoint,
    is_checkpoint_of,
    load_optimization_entries,
    optimization_entries,
    read_entry,
    save_checkpoint,
)
from training.diffusion.args import FREE_FLAGS, build_noise_scheduler, build_unet
from training.diffusion.export import TrainResult, finish_training, push_folder_to_hub, training_args_json
from training.diffusion.samples import GridDrawer, log_sample_grid, out_of_time
from training.diffusion.step import (
    EpochSampler,
    StepRandomness,
    configure_device_speed,
    diffusion_loss,
    make_optimizer,
    random_flip,
    to_model_input,
)
from training.run_folder import RUN_RECORD, check_run_folder, publish, run_identity, write_run_record

# The top-level names a run writes into --output_dir (one kind adds its own), so that a folder holding any of them
# and no record of this run is refused instead of overwritten (training/run_folder.py).
OUTPUT_NAMES = (
    "README.md",
    "model_index.json",
    "unet",
    "scheduler",
    "samples.png",
    "training_args.json",
    "train_summary.json",
    "logs",
    "samples",
    "checkpoint-*",
    ".checkpoint-*",
    RUN_RECORD,
)


@dataclass
class ModelKind:
    """What differs between the model of train_cfg.py and that of train_ddpm.py."""

    script: str  # the run record's name for the script ("train_cfg.py")
    channels: int
    draw_grid: GridDrawer  # the logged sample grids and the exported samples.png
    save_pipeline: Callable[[UNet2DModel, Path], None]  # model_index.json, unet/, scheduler/ into a folder
    write_card: Callable[[Path], None]  # README.md, from the folder's training_args.json and train_summary.json
    null_class_id: int | None = None  # conditional models: labels 0..null_class_id - 1, null_class_id = no label
    label_dropout: float = 0.0
    random_flip: bool = False  # mirror each training image left-right with probability 1/2
    summary: dict = field(default_factory=dict)  # more fields for train_summary.json
    output_names: tuple[str, ...] = ()  # names the kind writes beside OUTPUT_NAMES


def train_diffusion(
    args, kind: ModelKind, load_data: Callable[[], tuple[torch.Tensor, torch.Tensor | None]]
) -> TrainResult:
    """Train on `load_data()` (uint8 images [N, C, H, W], and class ids [N] for a conditional kind, else None) as
    `args` say, then publish the EMA weights to `args.output_dir`."""
    start = time.perf_counter()  # the wall-time budget counts data loading too
    # 0. every check before any work: the folder is this run's, the checkpoint to resume is whole and this run's,
    # the data reads. A refusal leaves nothing behind.
    identity = run_identity(args, FREE_FLAGS)
    check_run_folder(
        args.output_dir,
        kind.script,
        identity,
        OUTPUT_NAMES + kind.output_names,
        "--output_dir",
        is_ours=lambda path: is_checkpoint_of(path, identity),
    )
    checkpoint = find_checkpoint(args.resume_from_checkpoint, args.output_dir, identity)
    images, labels = load_data()
    output_dir = args.output_dir
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
    sampler = EpochSampler(  # refuses a batch the data cannot fill
        len(images), args.train_batch_size, accelerator.num_processes, accelerator.process_index, args.seed, device
    )
    if accelerator.is_main_process:  # every check passed: the folder becomes this run's
        output_dir.mkdir(parents=True, exist_ok=True)
        write_run_record(output_dir, kind.script, identity, args)
        accelerator.init_trackers("train", config={k: str(v) for k, v in vars(args).items()})

    # 1. data: decoded once by the script, kept on the training device as uint8; a batch is an index into it
    images = images.to(device)
    labels = labels.to(device) if labels is not None else None

    # 2. model, EMA (the sampling weights; warm-up so the random init fades fast), optimizer, schedule
    torch.manual_seed(args.seed)
    num_class_embeds = kind.null_class_id + 1 if kind.null_class_id is not None else None
    unet = build_unet(args, channels=kind.channels, num_class_embeds=num_class_embeds)
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

    def checkpoint_entries() -> dict:
        return optimization_entries(accelerator, unet, optimizer, lr_scheduler) | {"ema": ema.state_dict()}

    # 3. resume: the step comes from the checkpoint; the randomness of every later step from the step
    global_step = 0
    if checkpoint is not None:
        global_step, path = checkpoint
        load_optimization_entries(accelerator, path, unet, optimizer, lr_scheduler)
        load_ema(ema, read_entry(path, "ema"), unet, path)
        ema.to(device)
        accelerator.print(f"resumed from {path} at step {global_step}")

    randomness = StepRandomness(args.seed, accelerator.process_index, device)
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
            if kind.random_flip:
                clean = random_flip(clean, generator)  # drawn before the loss's draws
            batch_labels = labels[index] if labels is not None else None
            with accelerator.accumulate(unet), accelerator.autocast():
                loss = diffusion_loss(
                    unet, noise_scheduler, clean, batch_labels, generator, kind.label_dropout, kind.null_class_id
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
            save_checkpoint(
                accelerator, output_dir, global_step, identity, checkpoint_entries, args.checkpoints_total_limit
            )
        if global_step % args.save_images_steps == 0:
            log_sample_grid(accelerator, unet, ema, kind.draw_grid, output_dir, global_step)
        if stopped_by_time:
            accelerator.print(f"--max_train_seconds {args.max_train_seconds} reached at step {global_step}")
            break
    progress.close()

    # 5. export the EMA weights, with the records the card is made from, as one folder written whole
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
    if accelerator.is_main_process:
        summary = result.summary() | run_description(result.unet, len(images), accelerator, args) | kind.summary

        def write_export(staging: Path) -> None:
            kind.save_pipeline(result.unet.eval(), staging)
            kind.draw_grid(result.unet).save(staging / "samples.png")
            (staging / "training_args.json").write_text(training_args_json(args))
            (staging / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            kind.write_card(staging)

        publish(output_dir, write_export)
        accelerator.print(f"saved the pipeline to {output_dir}")
        if args.push_to_hub:
            accelerator.print(f"pushed: {push_folder_to_hub(output_dir, args.hub_model_id)}")
    return result


def load_ema(ema: EMAModel, state: dict, unet, path: Path) -> None:
    """The EMA of a checkpoint, refused when its weights do not have the model's shapes."""
    shadow = state.get("shadow_params") or []
    shapes = [tuple(p.shape) for p in unet.parameters()]
    if [tuple(p.shape) for p in shadow] != shapes:
        raise ValueError(f"checkpoint {path} holds EMA weights of another model shape")
    ema.load_state_dict(state)


def device_name(device: torch.device) -> str:
    """The GPU's name, or "CPU (machine)": what a card says the run ran on."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"


def run_description(model: UNet2DModel, num_images: int, accelerator, args) -> dict:
    """What a card needs to know about the run beside its arguments: data size, model size, hardware."""
    hardware = device_name(accelerator.device)
    return {
        "num_images": num_images,
        "num_params": sum(p.numel() for p in model.parameters()),
        "hardware": f"{accelerator.num_processes} x {hardware}; PyTorch {torch.__version__}, diffusers "
        f"{diffusers.__version__}, {args.mixed_precision} mixed precision",
    }
