"""Train a DANN digit classifier: source-only, domain-adversarial, mean teacher, VADA, or target-only (the upper
bound).

    accelerate launch training/train_dann.py --source mnistm --target usps --mode mean_teacher \
        --source_dir ../shared/data/mnistm --target_dir ../shared/data/usps --output_dir runs/dann-mnistm-usps

With no arguments it trains for a few seconds on the embedded MNIST-M / USPS subsets (CPU smoke run).
Two CPU processes: `accelerate launch --multi_gpu --num_processes 2 training/train_dann.py ...`.

Every split is decoded once into uint8 tensors kept on the training device (training/dann/data.py); batches
are index slices and augmentation is one batched `grid_sample`, so there is no DataLoader. Each step:
  1. a labelled batch (augmented with --augment) and, in `dann` / `mean_teacher` / `vada` mode, an unlabelled
     target batch, passed through the network together (BatchNorm sees both domains);
  2. cross-entropy of the label predictor on the labelled rows;
  3. `dann`: BCE of the domain classifier behind the gradient reversal, lambda_p = 2 / (1 + exp(-10 p)) - 1
     (Ganin et al., 2016, alg. 1), plus optional target entropy; `mean_teacher`: the student sees an
     augmented target view and learns the confident hard labels of a moving-average teacher on the plain
     view; `vada`: DANN plus the target's conditional entropy and its virtual adversarial divergence
     (the prediction kept steady within --vat_epsilon of each target image). The loss terms are in
     training/dann/methods.py, the evaluation in training/dann/evaluation.py.
After training: AdaBN on the target (--adapt_bn), a softmax temperature fitted on source validation images,
and a Hub-style folder (weights, config, card, metrics) written atomically.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from tqdm.auto import tqdm

from adapters import to_model_range
from pipelines.command_line import run_command
from pipelines.dann.modeling_dann import DANNConfig, DANNModel, dann_lambda
from training.checkpoints import (
    complete_checkpoints,
    find_checkpoint,
    load_optimization_entries,
    load_weights,
    optimization_entries,
    read_entry,
    save_checkpoint,
)
from training.dann.args import FREE_FLAGS, parse_args
from training.dann.data import augment_with_flags, load_splits
from training.dann.evaluation import accuracy, final_metrics
from training.dann.methods import (
    MODES,
    adversarial_perturbation,
    domain_loss,
    ema_update,
    entropy_loss,
    kl_divergence,
    make_teacher,
    pseudo_label_loss,
    teacher_logits,
)
from training.dann.output import OUTPUT_NAMES, dann_card, save_model
from training.run_folder import check_run_folder, run_identity, write_run_record

__all__ = ["MODES", "main", "parse_args"]

logger = get_logger(__name__)


def check_before_work(args) -> tuple[dict, tuple[int, Path] | None]:
    """This run's identity and the checkpoint to resume, after refusing a folder or checkpoint of another run."""
    identity = run_identity(args, FREE_FLAGS)
    output_dir = Path(args.output_dir)
    check_run_folder(
        output_dir,
        "train_dann.py",
        identity,
        OUTPUT_NAMES,
        "--output_dir",
        is_ours=lambda path: path.name == "checkpoints" and bool(complete_checkpoints(path, identity)),
    )
    root = output_dir / "checkpoints"
    if not args.resume_from_checkpoint and complete_checkpoints(root, identity):
        raise FileExistsError(
            f"{root} already holds checkpoints of this run: pass --resume_from_checkpoint latest "
            "to continue it, or choose another --output_dir"
        )
    return identity, find_checkpoint(args.resume_from_checkpoint, root, identity)


def main(args):
    start = time.perf_counter()
    identity, checkpoint = check_before_work(args)
    accelerator = Accelerator(
        # Without CUDA, cpu=True makes processes started by `accelerate launch --multi_gpu` join one gloo group.
        cpu=not torch.cuda.is_available(),
        # Only dann and vada modes use the domain classifier; DDP must be told about parameters without gradients.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=args.mode not in ("dann", "vada"))],
        mixed_precision=args.mixed_precision,
        # A prepared scheduler otherwise steps once per PROCESS at every optimiser step (accelerate assumes
        # the schedule counts single-process batches); ours counts optimiser steps, so step it once.
        step_scheduler_with_optimizer=False,
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    if torch.cuda.is_available():
        # fixed 28x28 shapes: let cuDNN pick the fastest kernels once; TF32 for the linear heads
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    world, rank = accelerator.num_processes, accelerator.process_index
    if args.batch_size % world:
        raise ValueError(f"--batch_size {args.batch_size} is not divisible by the {world} processes")
    set_seed(args.seed)

    # 1. data: decoded once, kept on the training device as uint8
    device = accelerator.device
    source = load_splits(args.source, args.source_dir, holdout_per_class=args.holdout_per_class).to(device)
    target = load_splits(args.target, args.target_dir, holdout_per_class=args.holdout_per_class).to(device)
    labelled = target if args.mode == "target_only" else source
    uses_target = args.mode in ("dann", "mean_teacher", "vada")
    logger.info(
        f"source {args.source}: train {len(source.train_labels)}, validation {len(source.val_labels)}; "
        f"target {args.target}: train {len(target.train_labels)}, validation {len(target.val_labels)} "
        f"({target.val_note}); mode {args.mode}, {world} process(es)",
        main_process_only=True,
    )
    steps_per_epoch = len(labelled.train_labels) // args.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"--batch_size {args.batch_size} exceeds the {len(labelled.train_labels)} training images")
    if args.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, args.steps_per_epoch)
    total_steps = steps_per_epoch * args.epochs
    if accelerator.is_main_process:  # every check passed: the folder becomes this run's
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        write_run_record(Path(args.output_dir), "train_dann.py", identity, args)

    # 2. model, optimiser, schedule; the mean teacher is a plain copy outside DDP (it never gets gradients)
    config = DANNConfig(
        architecture=args.architecture,
        input_normalization=args.input_normalization,
        conv_channels=list(args.conv_channels),
        lambda_gamma=args.lambda_gamma,
        lambda_max=args.lambda_max,
    )
    model = DANNModel(config)
    teacher = make_teacher(model).to(device) if args.mode == "mean_teacher" else None
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    lr_lambda = (
        (lambda step: 1.0)
        if args.lr_schedule == "constant"
        else (lambda step: (1.0 + 10.0 * step / total_steps) ** -0.75)
    )
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    unwrapped = accelerator.unwrap_model(model)
    epoch, history = 0, []  # epochs done, one metrics record each

    def checkpoint_entries() -> dict:
        entries = optimization_entries(accelerator, model, optimizer, lr_scheduler)
        entries["progress"] = {"epoch": epoch, "history": history}
        if teacher is not None:
            entries["teacher"] = teacher.state_dict()
        return entries

    if checkpoint is not None:
        path = checkpoint[1]
        load_optimization_entries(accelerator, path, model, optimizer, lr_scheduler)
        progress_record = read_entry(path, "progress")
        epoch, history = progress_record["epoch"], progress_record["history"]
        if teacher is not None:
            load_weights(teacher, path, "teacher")
        logger.info(f"resumed from {path} at epoch {epoch}")
    elif args.resume_from_checkpoint:
        logger.info(f"no checkpoint of this run in {Path(args.output_dir, 'checkpoints')}; starting from scratch")

    # 3. training loop
    progress = tqdm(
        total=total_steps,
        initial=epoch * steps_per_epoch,
        desc=args.mode,
        disable=not accelerator.is_local_main_process,
        mininterval=30,
    )
    while epoch < args.epochs:
        model.train()
        # One generator per epoch seeded from (seed, epoch): the same order on every process, and after a resume.
        generator = torch.Generator(device=device).manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(len(labelled.train_labels), generator=generator, device=device)
        target_order = torch.randperm(len(target.train_labels), generator=generator, device=device)
        loss_sum = torch.zeros((), device=device)  # summed on the device: no GPU sync per step
        passed_sum = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            p = (epoch * steps_per_epoch + step) / total_steps
            rows = order[step * args.batch_size : (step + 1) * args.batch_size][rank::world]
            images, labels = to_model_range(labelled.train_images[rows]), labelled.train_labels[rows]
            if args.augment:
                images = augment_with_flags(images, generator, args, args.aug_scale, backgrounds=True)
            if uses_target:
                # target rows cycle through a per-epoch permutation of the (unlabelled) target set
                first = (step * args.batch_size) % max(1, len(target_order) - args.batch_size + 1)
                target_images = to_model_range(
                    target.train_images[target_order[first : first + args.batch_size][rank::world]]
                )
            n = len(images)
            if args.mode == "dann":
                lambda_p = dann_lambda(p, args.lambda_gamma, args.lambda_max)
                out = model(torch.cat([images, target_images]), grl_coeff=lambda_p)
                loss = F.cross_entropy(out.logits[:n], labels) + domain_loss(out.domain_logits, n)
                if args.entropy_weight > 0:
                    loss = loss + args.entropy_weight * lambda_p * entropy_loss(out.logits[n:])
            elif args.mode == "mean_teacher":
                student_view = augment_with_flags(target_images, generator, args, args.target_aug_scale)
                out = model(torch.cat([images, student_view]))
                pseudo, passed = pseudo_label_loss(
                    out.logits[n:], teacher_logits(teacher, target_images), args.confidence_threshold
                )
                loss = F.cross_entropy(out.logits[:n], labels) + args.consistency_weight * pseudo
                passed_sum += passed
            elif args.mode == "vada":
                lambda_p = dann_lambda(p, args.lambda_gamma, args.lambda_max)
                # the perturbation comes from the plain module in eval mode (deterministic, no DDP hooks)
                unwrapped.eval()
                perturbation = adversarial_perturbation(
                    lambda x: unwrapped(x).logits, target_images, args.vat_epsilon, generator
                )
                model.train()
                m = len(target_images)
                out = model(torch.cat([images, target_images, target_images + perturbation]), grl_coeff=lambda_p)
                target_logits = out.logits[n : n + m]
                target_terms = entropy_loss(target_logits) + kl_divergence(target_logits, out.logits[n + m :])
                loss = (
                    F.cross_entropy(out.logits[:n], labels)
                    + domain_loss(out.domain_logits[: n + m], n)
                    + args.target_weight * lambda_p * target_terms
                )
            else:
                loss = F.cross_entropy(model(images).logits, labels)
            accelerator.backward(loss)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if teacher is not None:
                ema_update(teacher, unwrapped, args.ema_decay)
            loss_sum += loss.detach().float()
            progress.update(1)

        # 4. validation on the target every epoch, for the record only: no choice is made from it
        epoch += 1
        evaluated = teacher if teacher is not None else unwrapped
        record = {
            "epoch": epoch,
            "loss": loss_sum.item() / steps_per_epoch,
            "learning_rate": optimizer.param_groups[0]["lr"],
        }
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            record["target_val_accuracy"] = accuracy(
                evaluated, target.val_images, target.val_labels, args.eval_batch_size
            )
        record["elapsed_s"] = time.perf_counter() - start
        if teacher is not None:
            record["pseudo_label_fraction"] = passed_sum.item() / steps_per_epoch
        history.append(record)
        logger.info(
            f"epoch {epoch}/{args.epochs}: "
            + ", ".join(f"{key} {value:.4f}" for key, value in record.items() if key not in ("epoch", "elapsed_s")),
            main_process_only=True,
        )
        if epoch % args.checkpoint_every == 0 or epoch == args.epochs:
            root = Path(args.output_dir, "checkpoints")
            save_checkpoint(accelerator, root, epoch, identity, checkpoint_entries, args.checkpoints_total_limit)
    progress.close()
    accelerator.wait_for_everyone()

    # 5. the final model (the teacher in mean_teacher mode: the average of the student's last weights)
    final_model = unwrapped
    if teacher is not None:
        unwrapped.load_state_dict(teacher.state_dict())
    final = final_metrics(final_model, args, source, target, history, total_steps, world, start)
    if accelerator.is_main_process:
        card = dann_card(config, args, final, history, world)
        save_model(final_model, Path(args.output_dir), card, final)
        logger.info(f"saved {args.output_dir}: target val accuracy {final['target_val_accuracy']:.4f}")
    accelerator.end_training()
    return final


if __name__ == "__main__":
    run_command(main, parse_args)
