"""Train the digit classifier that scores generated MNIST-M digits (`pipelines.digit_classifier.score`).

Sub-minute CPU run on the embedded subset (really trains: ~0.83 validation accuracy in ~45 s):

    python -m training.train_digit_classifier

The shipped classifier (hub_cards/mnistm-digit-classifier):

    OMP_NUM_THREADS=1 python -m training.train_digit_classifier --data_source ../shared/data/mnistm \
        --num_epochs 12 --output_dir hub_cards/mnistm-digit-classifier

The result is a Hub-style folder: model safetensors + config.json, a README.md card with the validation
accuracy, eval_results.json and confusion_matrix.png. Checkpoints for resuming go to --project_dir.
"""

import argparse
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from adapters import to_model_range
from pipelines.command_line import check_seed, run_command
from pipelines.digit_classifier.modeling_digit_classifier import DigitClassifier
from pipelines.digit_classifier.score import accuracy_report, format_report
from training.checkpoints import (
    find_checkpoint,
    is_checkpoint_of,
    load_optimization_entries,
    optimization_entries,
    save_checkpoint,
)
from training.classifier.output import MODEL_NAMES, save_classifier
from training.dann.data import load_splits, random_affine
from training.run_folder import RUN_RECORD, check_run_folder, run_identity, write_run_record

logger = get_logger(__name__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnistm", help="digit dataset name (adapters.load_digits)")
    parser.add_argument(
        "--data_source", default=None, help="local dataset folder / file or Hub id; default: the embedded subset"
    )
    parser.add_argument("--image_size", type=int, default=28)
    parser.add_argument("--block_channels", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument(
        "--output_dir", default="runs/digit-classifier/model", help="where the final Hub-style folder is written"
    )
    parser.add_argument("--project_dir", default="runs/digit-classifier", help="checkpoints and logs")
    parser.add_argument("--num_epochs", type=int, default=10)
    parser.add_argument("--max_train_steps", type=int, default=None, help="overrides --num_epochs")
    parser.add_argument("--train_batch_size", type=int, default=128)
    parser.add_argument("--eval_batch_size", type=int, default=512)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--weight_decay", type=float, default=5e-4)
    parser.add_argument("--lr_scheduler", default="cosine", help="a diffusers.optimization scheduler name")
    parser.add_argument("--lr_warmup_fraction", type=float, default=0.05, help="of the training steps")
    parser.add_argument("--max_shift", type=float, default=2.0, help="random translation, pixels (0: off)")
    parser.add_argument("--max_rotation", type=float, default=10.0, help="random rotation, degrees (0: off)")
    parser.add_argument("--checkpointing_steps", type=int, default=500)
    parser.add_argument("--checkpoints_total_limit", type=int, default=2)
    parser.add_argument("--resume_from_checkpoint", default=None, help='a checkpoint folder or "latest"')
    parser.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    # Checked before any data is decoded or folder made; 0 steps must not silently mean "use the epochs".
    positive = [
        "num_epochs",
        "train_batch_size",
        "eval_batch_size",
        "gradient_accumulation_steps",
        "checkpointing_steps",
        "image_size",
        "max_train_steps",
        "checkpoints_total_limit",
    ]
    for option in positive:
        value = getattr(args, option)
        if value is not None and value < 1:  # None: max_train_steps from the epochs, no checkpoint limit
            raise ValueError(f"--{option} must be >= 1, got {value}")
    if args.max_shift < 0 or args.max_rotation < 0:
        raise ValueError(f"--max_shift and --max_rotation must be >= 0, got {args.max_shift}, {args.max_rotation}")
    check_seed(args.seed)
    return args


def random_shift_and_rotation(images: torch.Tensor, args) -> torch.Tensor:
    """Small random shifts and rotations (no zoom, no flips: digits keep their identity).

    The DANN trainer's random_affine, drawing from torch's global generator: accelerate's save_state stores
    that generator, so a resumed run replays the same augmentation.
    """
    if args.max_shift == 0 and args.max_rotation == 0:
        return images
    return random_affine(
        images,
        torch.default_generator,
        max_rotation=args.max_rotation,
        scale=(1.0, 1.0),
        max_translate=args.max_shift / images.shape[-1],  # pixels -> fraction of the side
    )


def evaluate(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> dict:
    predictions = model.predict(to_model_range(images), batch_size=batch_size)
    return accuracy_report(predictions, labels)


# Flags a resumed run may change and still be the same run (training/run_folder.py): where it is written, how
# long it runs, how often it saves, how fast it computes.
FREE_FLAGS = (
    "output_dir",
    "project_dir",
    "resume_from_checkpoint",
    "num_epochs",
    "max_train_steps",
    "checkpointing_steps",
    "checkpoints_total_limit",
    "eval_batch_size",
    "num_threads",
)
# The top-level names a run writes into --project_dir and into --output_dir.
PROJECT_NAMES = ("checkpoint-*", ".checkpoint-*", "logs", RUN_RECORD)
SCRIPT = "train_digit_classifier.py"


def check_before_work(args) -> tuple[dict, tuple[int, Path] | None]:
    """This run's identity and the checkpoint to resume, after refusing folders or a checkpoint of another run."""
    identity = run_identity(args, FREE_FLAGS)
    project_dir = Path(args.project_dir)
    check_run_folder(
        project_dir,
        SCRIPT,
        identity,
        PROJECT_NAMES,
        "--project_dir",
        is_ours=lambda path: is_checkpoint_of(path, identity),
    )
    check_run_folder(Path(args.output_dir), SCRIPT, identity, MODEL_NAMES, "--output_dir")
    return identity, find_checkpoint(args.resume_from_checkpoint, project_dir, identity)


def main(args):
    identity, checkpoint = check_before_work(args)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    project_dir = Path(args.project_dir)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),  # so that CPU processes launched together join one process group
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        project_config=ProjectConfiguration(project_dir=str(project_dir), logging_dir=str(project_dir / "logs")),
        log_with="tensorboard",
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    set_seed(args.seed)

    # the DANN trainer's splits: a dataset without a validation split holds out the last 100 images per class
    data = load_splits(args.dataset, args.data_source, image_size=args.image_size)
    logger.info(f"train {len(data.train_labels)} images, validation {len(data.val_labels)} images ({data.val_note})")

    model = DigitClassifier(block_channels=tuple(args.block_channels), image_size=args.image_size, dropout=args.dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    loader = DataLoader(
        TensorDataset(data.train_images, data.train_labels),
        batch_size=args.train_batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    if len(loader) == 0:
        raise ValueError(
            f"--train_batch_size {args.train_batch_size} exceeds the {len(loader.dataset)} training images"
        )
    steps_per_epoch = math.ceil(len(loader) / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps if args.max_train_steps is not None else args.num_epochs * steps_per_epoch
    num_epochs = math.ceil(max_train_steps / steps_per_epoch)
    lr_scheduler = get_scheduler(
        args.lr_scheduler,
        optimizer,
        num_warmup_steps=int(args.lr_warmup_fraction * max_train_steps) * accelerator.num_processes,
        num_training_steps=max_train_steps * accelerator.num_processes,
    )
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    if accelerator.is_main_process:  # every check passed: the folder becomes this run's
        project_dir.mkdir(parents=True, exist_ok=True)
        write_run_record(project_dir, SCRIPT, identity, args)
    if accelerator.is_main_process:
        accelerator.init_trackers("digit-classifier", config={k: str(v) for k, v in vars(args).items()})

    global_step = 0
    if checkpoint is not None:
        global_step, path = checkpoint
        load_optimization_entries(accelerator, path, model, optimizer, lr_scheduler)
        logger.info(f"resumed from {path} at step {global_step}")
    elif args.resume_from_checkpoint:
        logger.info(f"no checkpoint of this run in {project_dir}; starting a new run")
    first_epoch = global_step // steps_per_epoch
    resume_batches = (global_step % steps_per_epoch) * args.gradient_accumulation_steps

    progress = tqdm(range(max_train_steps), initial=global_step, disable=not accelerator.is_local_main_process)
    for epoch in range(first_epoch, num_epochs):
        model.train()
        batches = accelerator.skip_first_batches(loader, resume_batches) if epoch == first_epoch else loader
        for images, labels in batches:
            with accelerator.accumulate(model):
                pixel_values = random_shift_and_rotation(to_model_range(images), args)
                loss = F.cross_entropy(model(pixel_values), labels)
                accelerator.backward(loss)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                global_step += 1
                progress.update(1)
                logs = {"loss": loss.item(), "lr": lr_scheduler.get_last_lr()[0]}
                progress.set_postfix(**logs)
                accelerator.log(logs, step=global_step)
                if global_step % args.checkpointing_steps == 0:
                    save_checkpoint(
                        accelerator,
                        project_dir,
                        global_step,
                        identity,
                        lambda: optimization_entries(accelerator, model, optimizer, lr_scheduler),
                        args.checkpoints_total_limit,
                    )
            if global_step >= max_train_steps:
                break
        if accelerator.is_main_process:
            report = evaluate(accelerator.unwrap_model(model), data.val_images, data.val_labels, args.eval_batch_size)
            accelerator.log({"val_accuracy": report["accuracy"]}, step=global_step)
            logger.info(f"epoch {epoch + 1}/{num_epochs}: validation accuracy {report['accuracy']:.4f}")
    progress.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(model)
        report = evaluate(model, data.val_images, data.val_labels, args.eval_batch_size)
        logger.info("validation\n" + format_report(report))
        save_classifier(
            model, args, report, len(data.train_labels), mark_run=lambda f: write_run_record(f, SCRIPT, identity, args)
        )
        logger.info(f"saved the classifier to {args.output_dir}")
    accelerator.end_training()


if __name__ == "__main__":
    run_command(main, parse_args)
