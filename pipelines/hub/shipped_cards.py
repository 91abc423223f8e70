"""Refresh the cards of the shipped classifier, DANN and face folders from their measured numbers.

    python -m pipelines.hub.shipped_cards            # rewrites the three README.md files in hub_cards/

Metadata (library, task, Hub dataset ids, eval_results) and the "## Use" section are rebuilt; the rest of each
card's text is kept. The numbers come from the folders' own files (metrics.json, eval_results.json) and, for the
faces, from running the folder's DDIM against its GT/ images now. The conditional-DDPM cards are written
elsewhere: `cards.diffusion_usage_snippets` gives their usage snippets.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import EvalResult

import hub_cards
from pipelines.command_line import run_command
from pipelines.hub.cards import (
    accuracy_result,
    card_data,
    classifier_card_data,
    classifier_usage_snippets,
    diffusion_usage_snippets,
    refresh_card,
    usage_section,
)

# The faces' final training loss, read off the training log when the model was trained (README "Training").
FACES_FINAL_TRAINING_LOSS = 0.0182


def faces_gt_mse(folder: Path) -> float:
    """Mean MSE (0-255) of the folder's DDIM output (course preset, eta 0, 50 steps) against its GT/ images,
    scored as `python -m pipelines.ddim_from_noise score` does."""
    from adapters.faces import face_mse, load_face_noises
    from pipelines.ddim_from_noise.pipeline_ddim_from_noise import DDIMFromNoisePipeline

    pipe = DDIMFromNoisePipeline.from_pretrained(folder, preset="course")
    pipe.set_progress_bar_config(disable=True)
    noises = load_face_noises(folder / "noise")
    images = pipe([noises[name] for name in noises], num_inference_steps=50, output_type="pil").images
    with tempfile.TemporaryDirectory() as predictions:
        for name, image in zip(noises, images):
            image.save(Path(predictions) / f"{name}.png")
        return float(np.mean(list(face_mse(predictions, folder / "GT").values())))


def refresh_classifier_card(
    folder: Path, ref: str, result: EvalResult, datasets: list[str], tags: list[str], model_class: str, command: str
) -> Path:
    """Rewrite the card of a digit classifier folder (DANN or the scoring classifier); returns its path."""
    data = classifier_card_data(folder.name, datasets, [result], tags=tags)
    section = usage_section(*classifier_usage_snippets(ref, model_class), "transformers", command=command)
    refresh_card(folder, data, section)
    return folder / "README.md"


def refresh_shipped_cards(root: Path, ref_root: str = "hub_cards") -> dict[str, Path]:
    """Rewrite the three cards; `ref_root` is how the snippets name the folders (a path from the repo root).
    The commands name them as the installed commands do: by their shipped names."""
    written = {}

    name = "dann-mnistm-usps"
    metrics = json.loads((root / name / "metrics.json").read_text())
    source, target = metrics["source"], metrics["target"]
    written[name] = refresh_classifier_card(
        root / name,
        f"{ref_root}/{name}",
        accuracy_result(target, "validation", metrics["target_val_accuracy"]),
        [source, target],
        ["domain-adaptation", "dann", source, target],
        "DANNModel",
        f"python -m pipelines.dann --pretrained {name} --input_dir DIGITS/ --output_csv pred.csv",
    )

    name = "mnistm-digit-classifier"
    report = json.loads((root / name / "eval_results.json").read_text())
    written[name] = refresh_classifier_card(
        root / name,
        f"{ref_root}/{name}",
        accuracy_result("mnistm", report["split"], report["accuracy"]),
        ["mnistm"],
        ["mnistm", "guided-diffusion-da"],
        "DigitClassifier",
        f"python -m pipelines.digit_classifier --pretrained {name} --images DIR",
    )

    name = "ddpm-lfw-faces"
    mse = faces_gt_mse(root / name)
    task = "unconditional-image-generation"
    faces = "LFW, the 100 grey 25x25 crops shipped with scikit-image (no Hub id)"
    results = [
        EvalResult(
            task_type=task,
            dataset_type="lfw",
            dataset_name=faces,
            dataset_split="train",
            metric_type="loss",
            metric_name="final training loss (noise MSE)",
            metric_value=FACES_FINAL_TRAINING_LOSS,
        ),
        EvalResult(
            task_type=task,
            dataset_type="lfw",
            dataset_name=faces,
            metric_type="mse",
            metric_name="MSE (0-255) of DDIM from noise/ against GT/",
            metric_value=round(mse, 4),
        ),
    ]
    data = card_data(
        library_name="diffusers",
        pipeline_tag=task,
        datasets=[],
        model_name=name,
        eval_results=results,
        metrics=["loss", "mse"],
        tags=["diffusers", "ddpm", "ddim", task, "faces", "custom_code"],
    )
    command = (
        f"python -m pipelines.ddim_from_noise --pretrained {name} --output_dir out   # the folder's noise/\n"
        f"python -m pipelines.ddim_from_noise score --pred out --gt {ref_root}/{name}/GT"
    )
    section = usage_section(
        *diffusion_usage_snippets(f"{ref_root}/{name}", "DDIMFromNoisePipeline"), "diffusers", command=command
    )
    refresh_card(root / name, data, section)
    written[name] = root / name / "README.md"
    return written


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=hub_cards.ROOT, help="folder holding the shipped models")
    return parser.parse_args(argv)


def main(args) -> dict[str, Path]:
    torch.manual_seed(0)
    written = refresh_shipped_cards(args.root)
    for name, path in written.items():
        print(f"{name}: {path}")
    return written


def cli(argv=None) -> None:
    run_command(main, parse_args, argv)


if __name__ == "__main__":
    cli()
