"""Score a folder of generated digits with the digit classifier: overall and per-digit accuracy.

    python -m pipelines.digit_classifier --images OUT [--json r.json]      # the shipped mnistm-digit-classifier
    python -m pipelines.digit_classifier --images OUT --course_classifier Classifier.pth   # the course's grader

Every `*.png` in the folder is scored; its true label is the first character of its file name, as in
the course's `{digit}_{001..100}.png` convention. Images of any size or mode are converted to the
classifier's input (28x28 RGB). With `--course_classifier`, the folder is read and scored exactly as the
course's own grader reads it (every entry, 28x28 only: `pipelines/digit_classifier/course_grader.py`).
"""

import argparse
import json
from pathlib import Path

import torch
from PIL import Image
from sklearn.metrics import confusion_matrix

from adapters import read_image_file
from adapters.folders import check_output_file, write_text_atomically
from pipelines.command_line import resolve_pretrained, run_command
from pipelines.digit_classifier.course_grader import course_predictions, load_course_classifier, read_as_course_grader
from pipelines.digit_classifier.modeling_digit_classifier import DigitClassifier
from pipelines.model_folders import check_transformers_folder


def accuracy_report(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> dict:
    """Overall accuracy, per-class accuracy (classes that occur) and the confusion matrix [true][pred]."""
    predictions, labels = torch.as_tensor(predictions).long(), torch.as_tensor(labels).long()
    if predictions.shape != labels.shape or labels.numel() == 0:
        raise ValueError(f"need as many predictions as labels, at least one: {predictions.shape} vs {labels.shape}")
    confusion = torch.from_numpy(confusion_matrix(labels.numpy(), predictions.numpy(), labels=range(num_classes)))
    correct = confusion.diag()
    totals = confusion.sum(dim=1)
    per_digit = {
        str(digit): {
            "correct": int(correct[digit]),
            "total": int(totals[digit]),
            "accuracy": float(correct[digit]) / int(totals[digit]),
        }
        for digit in range(num_classes)
        if totals[digit] > 0
    }
    return {
        "accuracy": float(correct.sum()) / labels.numel(),
        "correct": int(correct.sum()),
        "total": labels.numel(),
        "per_digit": per_digit,
        "confusion_matrix": confusion.tolist(),
    }


def format_report(report: dict) -> str:
    lines = [f"{'digit':>5}  {'correct':>7}  {'total':>5}  {'accuracy':>8}"]
    for digit, row in report["per_digit"].items():
        lines.append(f"{digit:>5}  {row['correct']:>7}  {row['total']:>5}  {row['accuracy']:>8.4f}")
    lines.append(f"{'all':>5}  {report['correct']:>7}  {report['total']:>5}  {report['accuracy']:>8.4f}")
    return "\n".join(lines)


def read_labelled_images(folder: Path, pattern: str = "*.png") -> tuple[list[Path], list[Image.Image], list[int]]:
    """Files matching pattern in folder, their images, and the labels their first characters give."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(folder.glob(pattern))
    irregular = [path.name for path in files if not path.is_file()]
    if irregular:  # a FIFO would never finish reading, a folder is no image: say so rather than skip them
        raise ValueError(f"{folder}: not a regular file: {', '.join(irregular[:5])} (matching {pattern})")
    if not files:
        raise ValueError(f"no {pattern} files in {folder}")
    unlabelled = [path.name for path in files if not path.name[0].isdigit()]
    if unlabelled:
        raise ValueError(
            f"{len(unlabelled)} file name(s) in {folder} do not start with the digit they show "
            f"(expected {{digit}}_*.png), e.g. {unlabelled[:3]}"
        )
    images = [read_image_file(path) for path in files]
    return files, images, [int(path.name[0]) for path in files]


def score_folder(model: DigitClassifier, folder: Path, pattern: str = "*.png", batch_size: int = 512) -> dict:
    """accuracy_report for the images in folder, plus the files the model got wrong."""
    files, images, labels = read_labelled_images(folder, pattern)
    predictions = model.predict(model.images_to_tensor(images), batch_size=batch_size)
    return _with_misclassified([path.name for path in files], labels, predictions, model.config.num_classes)


def score_folder_as_course(classifier_path, folder: Path, batch_size: int = 512) -> dict:
    """accuracy_report of the course's own classifier on folder, read as the course's grader reads it."""
    model = load_course_classifier(classifier_path)
    names, images, labels = read_as_course_grader(folder)
    return _with_misclassified(names, labels.tolist(), course_predictions(model, images, batch_size))


def _with_misclassified(names: list[str], labels: list[int], predictions, num_classes: int = 10) -> dict:
    report = accuracy_report(predictions, torch.tensor(labels), num_classes=num_classes)
    report["misclassified"] = [
        {"file": name, "label": label, "predicted": int(pred)}
        for name, label, pred in zip(names, labels, predictions)
        if label != pred
    ]
    return report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pretrained",
        default="mnistm-digit-classifier",
        help="a DigitClassifier folder (save_pretrained) or a shipped model's name",
    )
    parser.add_argument(
        "--course_classifier",
        default=None,
        help="score with the course's own checkpoint (Classifier.pth) instead, reading the folder exactly as the "
        "course's grader does: every entry, its label int(name[0]), 28x28 images",
    )
    parser.add_argument("--images", required=True, help="folder of {digit}_*.png images")
    parser.add_argument("--pattern", default=None, help="which files in the folder to score (default: *.png)")
    parser.add_argument("--json", default=None, help="also write the report (with misclassified files) here")
    parser.add_argument("--batch_size", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.course_classifier is not None and args.pattern is not None:
        raise ValueError("--pattern does not apply with --course_classifier: the course's grader reads every entry")
    return args


def main(args) -> dict:
    if args.course_classifier is None:
        pretrained = resolve_pretrained(args.pretrained, hub=False)
        check_transformers_folder(pretrained, DigitClassifier)
    if not Path(args.images).is_dir():
        raise FileNotFoundError(f"image folder {args.images} (--images) does not exist")
    if args.json:
        check_output_file(args.json, "--json", inputs=(args.images, args.course_classifier, args.pretrained))
    if args.course_classifier is not None:
        report = score_folder_as_course(args.course_classifier, Path(args.images), args.batch_size)
        judge = f"the course's classifier {args.course_classifier}"
    else:
        model = DigitClassifier.from_pretrained(pretrained).to(args.device)
        report = score_folder(model, Path(args.images), args.pattern or "*.png", args.batch_size)
        judge = f"{args.pretrained}"
    print(f"{args.images}: {report['total']} images, scored by {judge}\n{format_report(report)}")
    if args.json:
        write_text_atomically(args.json, json.dumps(report, indent=2))
    return report


def cli(argv=None) -> None:
    run_command(main, parse_args, argv)


if __name__ == "__main__":
    cli()
