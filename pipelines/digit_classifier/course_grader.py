"""The course's own digit grader, run on the CPU: a student sees the grade of a folder before submitting it.

    python -m pipelines.digit_classifier --course_classifier Classifier.pth --images OUT

It reads the folder as the course's `digit_classifier.py --folder OUT` does (REFERENCE.md, "The course's grading
harness"): every entry of `os.listdir`, the label `int(name[0])`, the image opened with PIL and converted to RGB,
scaled to [0, 1] and normalised with mean 0.5 and std 0.5, classified at 28x28 by the course's LeNet. Where that
grader would stop (a hidden file, a sub-folder, an image of another size), this one stops first, naming the entry.
The checkpoint is the course's `{"state_dict": {...}}` file, read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adapters import read_image_file
from adapters.faces import read_tensor_file
from pipelines.model_folders import shape_misfit

COURSE_IMAGE_SIZE = 28


class CourseLeNet(nn.Module):
    """The course's classifier: two 5x5 convolutions with max-pooling, then three linear layers (256-128-64-10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


def load_course_classifier(path: str | os.PathLike, option: str = "--course_classifier") -> CourseLeNet:
    """The course's `Classifier.pth` (`{"state_dict": ...}`, or the bare state dict) in a `CourseLeNet`, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option} {path} is not a file")
    checkpoint = read_tensor_file(path, f"{option} {path}")
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{option} {path} is not the course's classifier checkpoint ({{'state_dict': tensors}})")
    model = CourseLeNet()
    problems = shape_misfit(
        {key: tuple(value.shape) for key, value in model.state_dict().items()},
        {key: tuple(value.shape) for key, value in state.items()},
    )
    if problems:
        raise ValueError(f"{option} {path} does not fill the course's LeNet: " + "; ".join(problems))
    model.load_state_dict(state)
    return model.eval()


def read_as_course_grader(folder: str | os.PathLike) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(names, images [N, 3, 28, 28] normalised as the course does, labels) for every entry of `folder`; an entry
    the course's grader would fail on is a ValueError naming it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    names = sorted(os.listdir(folder))
    if not names:
        raise ValueError(f"{folder} is empty")
    pixels, labels = [], []
    for name in names:
        if not name[0].isdigit():
            raise ValueError(
                f"the course's grader would stop at {folder / name}: it reads every entry's label as int(name[0]), "
                "so the folder must hold only {digit}_*.png files"
            )
        try:
            image = read_image_file(folder / name).convert("RGB")
        except ValueError as error:
            raise ValueError(f"the course's grader would stop at {folder / name}: {error}") from error
        if image.size != (COURSE_IMAGE_SIZE, COURSE_IMAGE_SIZE):
            raise ValueError(
                f"the course's grader would stop at {folder / name}: it is {image.size[0]}x{image.size[1]}, and the "
                f"course's LeNet classifies {COURSE_IMAGE_SIZE}x{COURSE_IMAGE_SIZE} images"
            )
        unit = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        pixels.append((unit - 0.5) / 0.5)
        labels.append(int(name[0]))
    return names, torch.stack(pixels), torch.tensor(labels)


@torch.no_grad()
def course_predictions(model: CourseLeNet, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    return torch.cat([model(images[i : i + batch_size]).argmax(dim=1) for i in range(0, len(images), batch_size)])
