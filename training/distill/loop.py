"""The student's training loop: teacher paths in, a few-step `ConditionalDDPMPipeline` folder out.

Loss. For a recorded state x_t of a teacher path (timestep t on the teacher's solver grid, digit c), the student's
eps prediction gives x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t), and its output is LCMScheduler's
c_skip(t) x_t + c_out(t) x0 (the consistency boundary condition, ~x0 away from t = 0). The loss is the mean
squared error to the teacher's end point of that path. Sampling with `LCMScheduler` applies this same map, so
what is trained is exactly what `pipe(digit=3)` runs.

Exact resume: the batch of step i (which paths, which states) is drawn from (seed, process, i) alone, as in the
diffusion loop; checkpoints are training/checkpoints.py's (no pickle, written whole).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import diffusers
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import LCMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file
from tqdm.auto import tqdm

from pipelines.conditional_ddpm.pipeline_conditional_ddpm import ConditionalDDPMPipeline
from training.checkpoints import (
    file_sha256,
    find_checkpoint,
    is_checkpoint_of,
    load_optimization_entries,
    optimization_entries,
    read_entry,
    save_checkpoint,
)
from training.diffusion.export import training_args_json
from training.diffusion.loop import device_name, load_ema
from training.diffusion.step import StepRandomness
from training.distill.card import write_student_card
from training.distill.samples import student_grid
from training.distill.trajectories import PathSettings, write_paths
from training.run_folder import RUN_RECORD, check_run_folder, publish, run_identity, write_run_record

SCRIPT = "train_distill.py"
FREE_FLAGS = (
    "output_dir",
    "paths_dir",
    "teacher_batch_size",
    "resume_from_checkpoint",
    "max_train_steps",
    "max_train_seconds",
    "checkpointing_steps",
    "checkpoints_total_limit",
    "logging_steps",
    "validation_size",
    "default_steps",
    "teacher",  # a path; the teacher's weights are pinned by their hash in every shard of teacher paths
)
OUTPUT_NAMES = (
    "README.md",
    "model_index.json",
    "unet",
    "scheduler",
    "samples.png",
    "training_args.json",
    "train_summary.json",
    "pipeline_conditional_ddpm.py",
    "checkpoint-*",
    ".checkpoint-*",
    RUN_RECORD,
)


def consistency_scheduler(teacher_scheduler_config, solver_steps: int) -> LCMScheduler:
    """LCMScheduler on the teacher's trained schedule whose timesteps for 1..solver_steps steps all lie on the
    teacher's trailing DPM-Solver grid (T - 1, T - 1 - T/n, ...), where the student was trained."""
    config = teacher_scheduler_config
    return LCMScheduler(
        num_train_timesteps=config["num_train_timesteps"],
        beta_start=config["beta_start"],
        beta_end=config["beta_end"],
        beta_schedule=config["beta_schedule"],
        original_inference_steps=solver_steps,
        prediction_type="epsilon",
    )


def student_output(unet, scheduler: LCMScheduler, states, timesteps, labels) -> torch.Tensor:
    """c_skip(t) x_t + c_out(t) x0(eps), as LCMScheduler.step computes its `denoised`."""
    eps = unet(states, timesteps, class_labels=labels).sample
    alphas = scheduler.alphas_cumprod.to(states.device)[timesteps].float().view(-1, 1, 1, 1)
    x0 = (states - (1 - alphas).sqrt() * eps) / alphas.sqrt()
    # the same formula LCMScheduler.step evaluates for one t, here for the whole batch at once
    c_skip, c_out = scheduler.get_scalings_for_boundary_condition_discrete(timesteps.double())
    return c_skip.float().view(-1, 1, 1, 1) * states + c_out.float().view(-1, 1, 1, 1) * x0


def load_paths(files: list[Path]) -> dict:
    """The shards' tensors concatenated along the paths; every shard has the same solver timesteps."""
    shards = [load_file(str(f)) for f in files]
    for f, shard in zip(files, shards):
        if not torch.equal(shard["timesteps"], shards[0]["timesteps"]):
            raise ValueError(f"{f} has other solver timesteps than {files[0]}")
    return {
        "states": torch.cat([s["states"] for s in shards]),
        "labels": torch.cat([s["labels"] for s in shards]),
        "end_points": torch.cat([s["end_points"] for s in shards]),
        "timesteps": shards[0]["timesteps"],
    }


def draw_batch(paths: dict, size: int, generator: torch.Generator):
    """`size` random (path, state) pairs: states, their timesteps, digits, the teacher's end points."""
    count, steps = paths["states"].shape[:2]
    path = torch.randint(0, count, (size,), generator=generator)
    state = torch.randint(0, steps, (size,), generator=generator)
    return paths["states"][path, state], paths["timesteps"][state], paths["labels"][path], paths["end_points"][path]


def load_student(args, teacher: ConditionalDDPMPipeline) -> UNet2DModel:
    unet = UNet2DModel.from_pretrained(args.student_init, subfolder="unet")
    for key in ("num_class_embeds", "sample_size", "in_channels"):
        if unet.config[key] != teacher.unet.config[key]:
            raise ValueError(
                f"--student_init {args.student_init}: its UNet has {key} = {unet.config[key]}, the teacher's "
                f"{teacher.unet.config[key]}"
            )
    return unet


def train_student(args):
    start = time.perf_counter()
    identity = run_identity(args, FREE_FLAGS)
    check_run_folder(
        args.output_dir, SCRIPT, identity, OUTPUT_NAMES, "--output_dir", is_ours=lambda p: is_checkpoint_of(p, identity)
    )
    checkpoint = find_checkpoint(args.resume_from_checkpoint, args.output_dir, identity)
    teacher = ConditionalDDPMPipeline.from_pretrained(args.teacher)
    teacher.set_progress_bar_config(disable=True)
    if teacher.config.get("distilled_guidance") is not None:
        raise ValueError(f"--teacher {args.teacher} is a distilled student itself; give a guided teacher")
    unet = load_student(args, teacher)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    set_seed(args.seed)
    device = accelerator.device

    # 1. teacher paths: every process makes the same missing shards would be wasteful; the main one makes them
    settings = PathSettings(
        teacher=file_sha256(Path(args.teacher) / "unet" / "diffusion_pytorch_model.safetensors"),
        guidance=args.guidance,
        solver_steps=args.solver_steps,
        shard_size=args.shard_size,
        seed=args.seed,
    )
    num_shards = args.num_paths // args.shard_size
    paths_start = time.perf_counter()
    if accelerator.is_main_process:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        write_run_record(args.output_dir, SCRIPT, identity, args)
        write_paths(teacher.to(device), settings, args.paths_dir, num_shards, args.teacher_batch_size)
    paths_seconds = time.perf_counter() - paths_start  # 0-ish when an earlier run made every shard
    accelerator.wait_for_everyone()
    files = [args.paths_dir / f"paths-{i:04d}.safetensors" for i in range(num_shards)]
    train_paths, held_out = load_paths(files[:-1]), load_paths(files[-1:])
    scheduler = consistency_scheduler(teacher.scheduler.config, args.solver_steps)
    if not torch.equal(train_paths["timesteps"].cpu(), scheduler_grid(scheduler, args.solver_steps)):
        raise ValueError("the teacher's solver timesteps are not the LCMScheduler grid; check --solver_steps")
    validation = draw_batch(held_out, args.validation_size, torch.Generator().manual_seed(args.seed))

    # 2. student, EMA, optimizer
    ema = EMAModel(unet.parameters(), decay=args.ema_decay, model_cls=UNet2DModel, model_config=unet.config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate)
    lr_scheduler = get_scheduler(
        "cosine",
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=args.max_train_steps * accelerator.num_processes,
    )
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    ema.to(device)
    global_step = 0
    if checkpoint is not None:
        global_step, path = checkpoint
        load_optimization_entries(accelerator, path, unet, optimizer, lr_scheduler)
        load_ema(ema, read_entry(path, "ema"), unet, path)
        ema.to(device)
        accelerator.print(f"resumed from {path} at step {global_step}")

    def checkpoint_entries() -> dict:
        return optimization_entries(accelerator, unet, optimizer, lr_scheduler) | {"ema": ema.state_dict()}

    randomness = StepRandomness(args.seed, accelerator.process_index)
    progress = tqdm(range(args.max_train_steps), initial=global_step, desc="student steps")
    history, loss_sum, loss_count, stopped_by_time = [], 0.0, 0, False
    unet.train()
    while global_step < args.max_train_steps:
        states, timesteps, labels, targets = draw_batch(
            train_paths, args.train_batch_size, randomness.for_micro_step(global_step)
        )
        loss = F.mse_loss(
            student_output(unet, scheduler, states.to(device), timesteps.to(device), labels.to(device)),
            targets.to(device),
        )
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(unet.parameters(), args.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        loss_sum, loss_count = loss_sum + loss.item(), loss_count + 1
        global_step += 1
        progress.update(1)
        if global_step % args.logging_steps == 0 or global_step == args.max_train_steps:
            held_out_loss = validation_loss(accelerator, unet, ema, scheduler, validation, device)
            history.append({"step": global_step, "loss": loss_sum / loss_count, "held_out_loss": held_out_loss})
            progress.set_postfix(loss=f"{loss_sum / loss_count:.4f}", held_out=f"{held_out_loss:.4f}")
            accelerator.print(json.dumps(history[-1]))
            loss_sum, loss_count = 0.0, 0
            budget = args.max_train_seconds
            stopped_by_time = budget is not None and time.perf_counter() - start > budget
        if global_step % args.checkpointing_steps == 0 or stopped_by_time:
            save_checkpoint(
                accelerator, args.output_dir, global_step, identity, checkpoint_entries, args.checkpoints_total_limit
            )
        if stopped_by_time:
            accelerator.print(f"--max_train_seconds {args.max_train_seconds} reached at step {global_step}")
            break
    progress.close()

    # 3. export the EMA weights as a pipeline folder, written whole
    student = accelerator.unwrap_model(unet)
    ema.copy_to(student.parameters())
    student.eval()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        pipeline = ConditionalDDPMPipeline(
            student,
            consistency_scheduler(teacher.scheduler.config, args.solver_steps),
            teacher.config.null_class_id,
            distilled_guidance=args.guidance,
            default_inference_steps=args.default_steps,
        )
        summary = {
            "teacher": args.teacher,
            "teacher_sha256": settings.teacher,
            "global_step": global_step,
            "stopped_by_time": stopped_by_time,
            "seconds": round(time.perf_counter() - start, 1),
            "teacher_paths_seconds_this_run": round(paths_seconds, 1),
            "num_train_paths": len(train_paths["states"]),
            "num_held_out_paths": len(held_out["states"]),
            "solver_timesteps": train_paths["timesteps"].tolist(),
            "history": history,
            "num_params": sum(p.numel() for p in student.parameters()),
            "hardware": f"{accelerator.num_processes} x {device_name(device)}; PyTorch {torch.__version__}, "
            f"diffusers {diffusers.__version__}",
        }

        def write_export(staging: Path) -> None:
            pipeline.save_pretrained(staging, safe_serialization=True)
            student_grid(pipeline).save(staging / "samples.png")
            (staging / "training_args.json").write_text(training_args_json(args))
            (staging / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            write_student_card(staging)

        publish(args.output_dir, write_export)
        accelerator.print(f"saved the student to {args.output_dir}")
    accelerator.end_training()
    return history


def scheduler_grid(scheduler: LCMScheduler, steps: int) -> torch.Tensor:
    scheduler.set_timesteps(steps)
    return scheduler.timesteps.cpu().long()


@torch.no_grad()
def validation_loss(accelerator, unet, ema, scheduler, batch, device) -> float:
    """The EMA student's loss on the held-out (path, state) pairs, in chunks."""
    model = accelerator.unwrap_model(unet)
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    model.eval()
    states, timesteps, labels, targets = batch
    total = 0.0
    for chunk in torch.split(torch.arange(len(states)), 256):
        out = student_output(
            model, scheduler, states[chunk].to(device), timesteps[chunk].to(device), labels[chunk].to(device)
        )
        total += F.mse_loss(out, targets[chunk].to(device), reduction="sum").item()
    ema.restore(model.parameters())
    model.train()
    return total / targets.numel()
