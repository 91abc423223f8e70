"""Train a DANN digit classifier: source-only, domain-adversarial, or target-only (the upper bound).

    accelerate launch training/train_dann.py --source mnistm --target usps --mode dann \
        --source_dir ../shared/data/mnistm --target_dir ../shared/data/usps --output_dir runs/dann-mnistm-usps

With no arguments it trains for a few seconds on the embedded MNIST-M / USPS subsets (CPU smoke run).
Two CPU processes: `accelerate launch --multi_gpu --num_processes 2 training/train_dann.py ...`.

Every split is decoded once into uint8 tensors kept on the training device; batches are index slices and
augmentation is one batched `grid_sample`, so there is no DataLoader. Each step (Ganin et al., 2016, alg. 1):
  1. features of a source batch and a target batch, passed together (BatchNorm sees both domains);
  2. cross-entropy of the label predictor on the labelled batch;
  3. in `dann` mode, BCE-with-logits of the domain classifier behind a gradient reversal layer whose
     lambda_p = 2 / (1 + exp(-10 p)) - 1 grows with the training progress p, plus optional entropy
     minimisation of the target predictions (weighted by lambda_p as well).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from adapters import DIGIT_DATASETS, to_model_range
from pipelines.dann.modeling_dann import ARCHITECTURES, INPUT_NORMALIZATIONS, DANNConfig, DANNModel, dann_lambda
from training.dann_data import load_splits, random_affine, random_invert, random_resample

logger = get_logger(__name__)

MODES = ("source_only", "dann", "target_only")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="mnistm", help=f"source dataset, one of {sorted(DIGIT_DATASETS)}")
    parser.add_argument("--target", default="usps", help=f"target dataset, one of {sorted(DIGIT_DATASETS)}")
    parser.add_argument("--source_dir", default=None, help="local copy of the source (default: embedded subset)")
    parser.add_argument("--target_dir", default=None, help="local copy of the target (default: embedded subset)")
    parser.add_argument("--mode", default="dann", help=f"one of {MODES}")
    parser.add_argument("--architecture", default="improved", help=f"one of {ARCHITECTURES}")
    parser.add_argument("--input_normalization", default="grey", choices=list(INPUT_NORMALIZATIONS),
                        help="improved architecture: grey or per-channel per-image standardisation")
    parser.add_argument("--output_dir", default="runs/dann-smoke")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps_per_epoch", type=int, default=None,
                        help="cap on steps per epoch (default: one pass over the labelled training set)")
    parser.add_argument("--batch_size", type=int, default=64, help="labelled images per step, all processes together")
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="Adam; the report used 3e-4")
    parser.add_argument("--lr_schedule", default="constant", choices=["constant", "dann"],
                        help="dann: mu_p = mu_0 / (1 + 10 p)^0.75 (Ganin et al.)")
    parser.add_argument("--weight_decay", type=float, default=0.0)
    parser.add_argument("--augment", action="store_true", help="random rotation/zoom/shift of the training images")
    parser.add_argument("--aug_rotation", type=float, default=15.0)
    parser.add_argument("--aug_scale", type=float, nargs=2, default=(0.9, 1.5))
    parser.add_argument("--aug_translate", type=float, default=0.1)
    parser.add_argument("--aug_invert", type=float, default=0.0,
                        help="probability of inverting a training image (digit polarity), with --augment")
    parser.add_argument("--aug_channel_invert", type=float, default=0.0,
                        help="probability of inverting each colour channel of a training image, with --augment")
    parser.add_argument("--aug_resample", type=float, default=0.0,
                        help="probability of shrinking a training image to 12-24 px and enlarging it back "
                             "(nearest or bilinear), with --augment")
    parser.add_argument("--entropy_weight", type=float, default=0.0, help="target entropy minimisation (dann mode)")
    parser.add_argument("--lambda_gamma", type=float, default=10.0)
    parser.add_argument("--lambda_max", type=float, default=1.0)
    parser.add_argument("--holdout_per_class", type=int, default=100,
                        help="validation images per class held out of train when a dataset has no validation split")
    parser.add_argument("--adapt_bn", action="store_true",
                        help="after training, re-estimate BatchNorm statistics on the unlabelled target train images")
    parser.add_argument("--eval_batch_size", type=int, default=1024)
    parser.add_argument("--mixed_precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--checkpoint_every", type=int, default=1, help="save the training state every N epochs")
    parser.add_argument("--checkpoints_total_limit", type=int, default=2)
    parser.add_argument("--resume_from_checkpoint", default=None, help='"latest" or a checkpoint folder')
    parser.add_argument("--num_threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for flag, value, allowed in (("mode", args.mode, MODES), ("architecture", args.architecture, ARCHITECTURES),
                                 ("source", args.source, DIGIT_DATASETS), ("target", args.target, DIGIT_DATASETS)):
        if value not in allowed:
            parser.error(f"unknown --{flag} {value!r}; choose one of {sorted(allowed)}")
    if args.epochs < 1 or args.batch_size < 2:
        parser.error("--epochs must be >= 1 and --batch_size >= 2")
    return args


class TrainingState:
    """Epoch counter and metric history, saved with every checkpoint so that resuming continues the run."""

    def __init__(self):
        self.epoch = 0
        self.history: list[dict] = []

    def state_dict(self):
        return {"epoch": self.epoch, "history": json.dumps(self.history)}

    def load_state_dict(self, state):
        self.epoch = int(state["epoch"])
        self.history = json.loads(state["history"])


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
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
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


def training_command(args) -> str:
    """The command line that reproduces a run from its parsed arguments."""
    parts = ["accelerate launch training/train_dann.py"]
    for key, value in vars(args).items():
        if value is None or value is False or key == "resume_from_checkpoint":
            continue
        if value is True:
            parts.append(f"--{key}")
        elif isinstance(value, (list, tuple)):
            parts.append(f"--{key} " + " ".join(str(v) for v in value))
        else:
            parts.append(f"--{key} {value}")
    return " \\\n    ".join(parts)


def model_card(config: DANNConfig, args, final: dict, history: list[dict], num_processes: int) -> str:
    settings = {k: v for k, v in vars(args).items() if k not in ("output_dir", "resume_from_checkpoint")}
    adapt_row = ""
    if "target_val_accuracy_before_adapt_bn" in final:
        adapt_row = ("| target validation accuracy before re-estimating BatchNorm on the target | "
                     f"{final['target_val_accuracy_before_adapt_bn']:.4f} |\n")
    scale_note = ""
    if args.augment and min(args.aug_scale) > 1.0:
        scale_note = (f"The {args.source} training digits were zoomed by {args.aug_scale[0]:g}-{args.aug_scale[1]:g} "
                      f"(the size of {args.target}'s digits), so the accuracy on {args.source} images at their "
                      "own scale is low by design.\n\n")
    rows = "\n".join(f"| {h['epoch']} | {h['loss']:.4f} | {h['target_val_accuracy']:.4f} |" for h in history)
    return f"""---
library_name: pytorch
tags:
- domain-adaptation
- dann
- image-classification
- digits
datasets:
- {args.source}
- {args.target}
metrics:
- accuracy
model-index:
- name: dann-{args.source}-{args.target}-{args.mode}
  results:
  - task:
      type: image-classification
    dataset:
      name: {args.target} (validation, {final['target_val_note']})
      type: {args.target}
    metrics:
    - type: accuracy
      value: {final['target_val_accuracy']:.4f}
---

# DANN digit classifier: {args.source} -> {args.target} ({args.mode})

`DANNModel` (pipelines/dann/modeling_dann.py), architecture `{config.architecture}`, trained with
`training/train_dann.py` in `{args.mode}` mode on {num_processes} process(es).

| metric | value |
|---|---|
| target ({args.target}) validation accuracy | {final['target_val_accuracy']:.4f} |
{adapt_row}| source ({args.source}) validation accuracy, as trained | {final['source_val_accuracy']:.4f} |
| labelled training images seen | {final['images_seen']} |
| wall time (s), data loading included | {final['wall_time_s']:.1f} |

{scale_note}Inputs: RGB 28x28 in [-1, 1], resized with PIL bilinear and converted to RGB exactly as
`adapters.decode_digits` does; `python -m pipelines.dann` applies the same preprocessing.

```bash
python -m pipelines.dann --pretrained {args.output_dir} --input_dir DIGITS/ --output_csv pred.csv
```

```python
from pipelines.dann.modeling_dann import DANNModel
model = DANNModel.from_pretrained("{args.output_dir}")
labels = model.predict(pixel_values)  # [N, 3, 28, 28] in [-1, 1]
```

Reproduce (data folders as in the project's shared data):

```bash
{training_command(args)}
```

## Per-epoch target validation accuracy

| epoch | train loss | target val accuracy |
|---|---|---|
{rows}

## Settings

```json
{json.dumps(settings, indent=2, default=str)}
```
"""


def save_model(model: DANNModel, output_dir: Path, card: str, metrics: dict) -> None:
    """Write weights, config, card and metrics to a temporary folder, then move each file into place."""
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".tmp-") as tmp:
        model.save_pretrained(tmp)
        (Path(tmp) / "README.md").write_text(card)
        (Path(tmp) / "metrics.json").write_text(json.dumps(metrics, indent=2))
        for name in ("config.json", "model.safetensors", "README.md", "metrics.json"):
            os.chmod(Path(tmp) / name, 0o644)
            os.replace(Path(tmp) / name, output_dir / name)


def main(args):
    start = time.perf_counter()
    # Without CUDA, cpu=True makes processes started by `accelerate launch --multi_gpu` join one gloo group.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        # source_only / target_only never use the domain classifier; DDP must be told.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=args.mode != "dann")],
        mixed_precision=args.mixed_precision,
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, automatic_checkpoint_naming=True, total_limit=args.checkpoints_total_limit
        ),
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
    logger.info(f"source {args.source}: train {len(source.train_labels)}, validation {len(source.val_labels)}; "
                f"target {args.target}: train {len(target.train_labels)}, validation {len(target.val_labels)} "
                f"({target.val_note}); mode {args.mode}, {world} process(es)", main_process_only=True)

    steps_per_epoch = len(labelled.train_labels) // args.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"--batch_size {args.batch_size} exceeds the {len(labelled.train_labels)} training images")
    if args.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, args.steps_per_epoch)
    total_steps = steps_per_epoch * args.epochs

    # 2. model and optimiser
    config = DANNConfig(architecture=args.architecture, input_normalization=args.input_normalization,
                        lambda_gamma=args.lambda_gamma, lambda_max=args.lambda_max)
    model = DANNModel(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    lr_lambda = (lambda step: 1.0) if args.lr_schedule == "constant" else (
        lambda step: (1.0 + 10.0 * step / total_steps) ** -0.75)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    state = TrainingState()
    accelerator.register_for_checkpointing(state)

    checkpoints = Path(args.output_dir, "checkpoints")
    if not args.resume_from_checkpoint and checkpoints.is_dir() and any(checkpoints.iterdir()):
        raise FileExistsError(f"{checkpoints} already holds checkpoints: pass --resume_from_checkpoint latest "
                              "to continue that run, or choose another --output_dir")
    if args.resume_from_checkpoint:
        path = None if args.resume_from_checkpoint == "latest" else args.resume_from_checkpoint
        if path is None and not (checkpoints.is_dir() and any(checkpoints.iterdir())):
            logger.info(f"no checkpoint in {checkpoints}; starting from scratch")
        else:
            accelerator.load_state(path)
            # the next automatic checkpoint name continues after the one we resumed from
            accelerator.project_configuration.iteration = state.epoch
            logger.info(f"resumed at epoch {state.epoch}")

    # 3. training loop
    progress = tqdm(total=total_steps, initial=state.epoch * steps_per_epoch, desc="dann",
                    disable=not accelerator.is_local_main_process)
    unwrapped = accelerator.unwrap_model(model)
    while state.epoch < args.epochs:
        epoch = state.epoch
        model.train()
        # One generator per epoch seeded from (seed, epoch): the same order on every process, and after a resume.
        generator = torch.Generator(device=device).manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(len(labelled.train_labels), generator=generator, device=device)
        target_order = torch.randperm(len(target.train_labels), generator=generator, device=device)
        loss_sum = torch.zeros((), device=device)  # summed on the device: no GPU sync per step
        for step in range(steps_per_epoch):
            global_step = epoch * steps_per_epoch + step
            p = global_step / total_steps
            rows = order[step * args.batch_size:(step + 1) * args.batch_size][rank::world]
            images = to_model_range(labelled.train_images[rows])
            labels = labelled.train_labels[rows]
            with accelerator.accumulate(model):
                if args.augment:
                    images = random_affine(images, generator, args.aug_rotation, tuple(args.aug_scale),
                                           args.aug_translate)
                    if args.aug_invert > 0:
                        images = random_invert(images, generator, args.aug_invert)
                    if args.aug_channel_invert > 0:
                        images = random_invert(images, generator, args.aug_channel_invert, per_channel=True)
                    if args.aug_resample > 0:
                        images = random_resample(images, generator, args.aug_resample)
                if args.mode == "dann":
                    # target rows cycle through a per-epoch permutation of the (unlabelled) target set
                    start_row = (step * args.batch_size) % max(1, len(target_order) - args.batch_size + 1)
                    t_rows = target_order[start_row:start_row + args.batch_size][rank::world]
                    target_images = to_model_range(target.train_images[t_rows])
                    lambda_p = dann_lambda(p, args.lambda_gamma, args.lambda_max)
                    out = model(torch.cat([images, target_images]), grl_coeff=lambda_p)
                    n = len(images)
                    class_loss = F.cross_entropy(out.logits[:n], labels)
                    # domain label 0 = source, 1 = target
                    domains = torch.cat([torch.zeros(n, device=device), torch.ones(len(target_images), device=device)])
                    domain_loss = F.binary_cross_entropy_with_logits(out.domain_logits.float(), domains)
                    loss = class_loss + domain_loss
                    if args.entropy_weight > 0:
                        target_probs = out.logits[n:].float().softmax(dim=1)
                        entropy = -(target_probs * target_probs.clamp_min(1e-8).log()).sum(dim=1).mean()
                        loss = loss + args.entropy_weight * lambda_p * entropy
                else:
                    loss = F.cross_entropy(model(images).logits, labels)
                accelerator.backward(loss)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach().float()
            progress.update(1)
            if step % 50 == 0:
                progress.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch)

        # 4. validation on the target every epoch (every process gets the same numbers; no collective)
        state.epoch = epoch + 1
        record = {
            "epoch": state.epoch,
            "loss": loss_sum.item() / steps_per_epoch,
            "target_val_accuracy": accuracy(unwrapped, target.val_images, target.val_labels, args.eval_batch_size),
            "elapsed_s": time.perf_counter() - start,
        }
        state.history.append(record)
        logger.info(f"epoch {state.epoch}/{args.epochs}: loss {record['loss']:.4f}, "
                    f"target val accuracy {record['target_val_accuracy']:.4f}", main_process_only=True)
        if state.epoch % args.checkpoint_every == 0 or state.epoch == args.epochs:
            accelerator.save_state()
    progress.close()

    # 5. Hub-style output folder: weights + config + card + metrics
    accelerator.wait_for_everyone()
    final = {"source": args.source, "target": args.target, "mode": args.mode, "architecture": args.architecture,
             # measured before any BatchNorm re-estimation, which specialises the model to the target
             "source_val_accuracy": accuracy(unwrapped, source.val_images, source.val_labels, args.eval_batch_size)}
    if args.adapt_bn:
        final["target_val_accuracy_before_adapt_bn"] = state.history[-1]["target_val_accuracy"]
        adapt_batchnorm(unwrapped, target.train_images, args.eval_batch_size)
    final.update({
        "target_val_accuracy": accuracy(unwrapped, target.val_images, target.val_labels, args.eval_batch_size),
        "target_val_note": target.val_note,
        "images_seen": total_steps * args.batch_size,
        "num_processes": world,
        "wall_time_s": time.perf_counter() - start,
        "history": state.history,
    })
    if accelerator.is_main_process:
        card = model_card(config, args, final, state.history, world)
        save_model(unwrapped, Path(args.output_dir), card, final)
        logger.info(f"saved {args.output_dir}: target val accuracy {final['target_val_accuracy']:.4f}")
    accelerator.end_training()
    return final


if __name__ == "__main__":
    main(parse_args())
