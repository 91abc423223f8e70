"""Label a folder of digit images with a trained DANN model and write `image_name,label` rows.

    python -m pipelines.dann --pretrained dann-mnistm-usps --input_dir digits/ --output_csv pred.csv

Every PNG or JPEG directly inside `--input_dir` (any size, grey, RGB or palette) is converted to RGB and
resized to 28x28 with PIL bilinear, exactly as `adapters.decode_digits` prepared the training data, by the
model's image processor; a digit with a transparent background is first laid on black (light strokes) or
white (dark strokes), not on whatever colour its transparent pixels hold.
Files with other extensions are skipped with a warning; a .png/.jpg file that cannot be decoded is an
error naming the file. Rows are sorted by file name.

`--with_confidence` adds a `confidence` column: the top probability of softmax(logits / T), with the
temperature T stored in the model's config.json (fitted by training/train_dann.py on source validation
images; 1.0 for a model trained before calibration existed, i.e. the raw softmax).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
from pathlib import Path

import torch

from adapters import read_image_file
from adapters.folders import check_output_file, write_file_atomically
from pipelines.command_line import resolve_pretrained, run_command
from pipelines.dann.image_processing_digits import DigitImageProcessor
from pipelines.dann.modeling_dann import DANNModel
from pipelines.model_folders import check_transformers_folder

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def list_images(input_dir: str | os.PathLike) -> list[Path]:
    """PNG/JPEG files directly inside `input_dir`, sorted by name; other files are skipped with a warning."""
    folder = Path(input_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder {str(folder)!r} does not exist or is not a folder")
    entries = sorted(folder.iterdir())
    irregular = [p.name for p in entries if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_file()]
    if irregular:  # a FIFO would never finish reading, a folder is no image: say so rather than skip them
        raise ValueError(f"input folder {str(folder)!r}: not a regular file: {', '.join(irregular[:5])}")
    files = [p for p in entries if p.is_file()]
    if not files:
        raise ValueError(f"input folder {str(folder)!r} is empty")
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    skipped = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if skipped:
        logger.warning("skipping %d file(s) that are not PNG/JPEG: %s", len(skipped), ", ".join(skipped[:5]))
    if not images:
        raise ValueError(f"input folder {str(folder)!r} holds no PNG or JPEG images ({len(files)} other file(s))")
    return images


def load_pixel_values(paths: list[Path], image_size: int = 28) -> torch.Tensor:
    """[N, 3, S, S] in [-1, 1], preprocessed by the model's image processor (the training data's transform)."""
    return DigitImageProcessor(image_size=image_size)([read_image_file(path) for path in paths])["pixel_values"]


@torch.no_grad()
def predict_folder(model: DANNModel, input_dir, batch_size: int = 512) -> list[tuple[str, int, float]]:
    """(file name, predicted digit, calibrated confidence) for every image of the folder, sorted by name."""
    paths = list_images(input_dir)
    rows = []
    device = next(model.parameters()).device
    temperature = float(getattr(model.config, "temperature", 1.0))
    model.eval()
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        pixel_values = load_pixel_values(chunk, model.config.image_size).to(device)
        confidence, labels = (model(pixel_values).logits.float() / temperature).softmax(dim=1).max(dim=1)
        rows += [(path.name, int(label), float(conf)) for path, label, conf in zip(chunk, labels, confidence)]
    return rows


def write_predictions(rows: list[tuple[str, int, float]], output_csv, with_confidence: bool = False) -> None:
    """CSV with header image_name,label (and confidence), written to a temporary file then moved into place."""

    def write(temporary: Path) -> None:
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle)
            if with_confidence:
                writer.writerow(["image_name", "label", "confidence"])
                writer.writerows((name, label, f"{confidence:.4f}") for name, label, confidence in rows)
            else:
                writer.writerow(["image_name", "label"])
                writer.writerows((name, label) for name, label, _ in rows)

    write_file_atomically(output_csv, write)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Predict digit labels for a folder of images with a DANN model.")
    parser.add_argument(
        "--pretrained",
        required=True,
        help="folder written by training/train_dann.py, a shipped model's name (dann-mnistm-usps) or a Hub id",
    )
    parser.add_argument("--input_dir", required=True, help="folder of PNG/JPEG digit images")
    parser.add_argument("--output_csv", required=True, help="where to write image_name,label")
    parser.add_argument(
        "--with_confidence",
        action="store_true",
        help="add a confidence column: top softmax probability at the model's fitted temperature",
    )
    parser.add_argument("--batch_size", type=int, default=512)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, got {args.batch_size}")
    return args


def main(args) -> list[tuple[str, int, float]]:
    pretrained = resolve_pretrained(args.pretrained)
    check_transformers_folder(pretrained, DANNModel)
    list_images(args.input_dir)  # an empty or missing folder fails here, before the model loads
    check_output_file(args.output_csv, "--output_csv", inputs=(args.input_dir, pretrained))
    model = DANNModel.from_pretrained(pretrained).to(args.device)
    rows = predict_folder(model, args.input_dir, args.batch_size)
    write_predictions(rows, args.output_csv, args.with_confidence)
    logger.info("wrote %d predictions to %s", len(rows), args.output_csv)
    return rows


def cli(argv=None) -> None:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    run_command(main, parse_args, argv)


if __name__ == "__main__":
    cli()
