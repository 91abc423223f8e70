"""Score a saved DANN folder: target validation accuracy (bilinear and nearest-neighbour resizing) and calibration.

    python -m training.report.dann_checkpoint --pretrained dann-mnistm-usps --source mnistm \
        --target usps --source_dir ../shared/data/mnistm --target_dir ../shared/data/usps \
        --output_json docs/figures/dann/shipped-mnistm-usps.json -- --augment --aug_scale 1.1 1.7 ...

The flags after `--` describe the training augmentation (train_dann's flags): the temperature it would be given
is fitted on source validation images so augmented, never on target labels. Target labels only score.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from adapters import to_model_range
from adapters.folders import check_output_file, write_text_atomically
from pipelines.command_line import resolve_pretrained, run_command
from pipelines.dann.modeling_dann import DANNModel
from pipelines.model_folders import check_transformers_folder
from training.dann.args import parse_args as parse_train_args
from training.dann.data import augment_with_flags, load_splits
from training.dann.evaluation import (
    eval_logits,
    expected_calibration_error,
    fit_temperature,
    logits_with_own_statistics,
    validation_resized,
)


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrained", required=True, help="a DANN folder or a shipped model's name")
    parser.add_argument("--output_json", default=None)
    args, rest = parser.parse_known_args(own)
    args.train = parse_train_args(rest + (argv[argv.index("--") + 1 :] if "--" in argv else []))
    return args


@torch.no_grad()
def main(args) -> dict:
    train = args.train
    args.pretrained = resolve_pretrained(args.pretrained, hub=False)
    check_transformers_folder(args.pretrained, DANNModel)
    if args.output_json:
        check_output_file(
            args.output_json, "--output_json", inputs=(args.pretrained, train.source_dir, train.target_dir)
        )
    model = DANNModel.from_pretrained(args.pretrained).eval()
    source = load_splits(train.source, train.source_dir)
    target = load_splits(train.target, train.target_dir)
    calibration = to_model_range(source.val_images)
    if train.augment:
        calibration = augment_with_flags(calibration, torch.Generator().manual_seed(train.seed), train, train.aug_scale)
    temperature = fit_temperature(logits_with_own_statistics(model, calibration, 1024), source.val_labels)
    logits = eval_logits(model, target.val_images, 1024)
    result = {
        "pretrained": str(args.pretrained),
        "target_val_accuracy": (logits.argmax(1) == target.val_labels).float().mean().item(),
        "stored_temperature": float(model.config.temperature),
        "target_val_ece_at_stored_temperature": expected_calibration_error(
            (logits / model.config.temperature).softmax(1), target.val_labels
        ),
        "fitted_temperature_on_source_validation": temperature,
        "target_val_ece_at_fitted_temperature": expected_calibration_error(
            (logits / temperature).softmax(1), target.val_labels
        ),
    }
    if train.target_dir:
        images, labels = validation_resized(train.target, train.target_dir, "nearest")
        nearest = eval_logits(model, images, 1024)
        result["target_val_accuracy_nearest_resize"] = (nearest.argmax(1) == labels).float().mean().item()
    if args.output_json:
        write_text_atomically(args.output_json, json.dumps(result, indent=2))
    return result


def cli(argv=None) -> None:
    print(json.dumps(run_command(main, parse_args, argv), indent=2))


if __name__ == "__main__":
    cli()
