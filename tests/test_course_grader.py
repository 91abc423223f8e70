"""`--course_classifier`: the course's LeNet checkpoint scores a folder exactly as the course's grader reads it."""

import json
import pickle
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pipelines.digit_classifier import score

SHAPES = {
    "conv1.weight": (6, 3, 5, 5),
    "conv1.bias": (6,),
    "conv2.weight": (16, 6, 5, 5),
    "conv2.bias": (16,),
    "fc1.weight": (128, 256),
    "fc1.bias": (128,),
    "fc2.weight": (64, 128),
    "fc2.bias": (64,),
    "fc3.weight": (10, 64),
    "fc3.bias": (10,),
}


def course_checkpoint(path, seed=0, **replace):
    """A Classifier.pth in the course's format ({"state_dict": ...}) with random weights."""
    generator = torch.Generator().manual_seed(seed)
    state = {name: torch.randn(shape, generator=generator) * 0.3 for name, shape in SHAPES.items()}
    state.update(replace)
    torch.save({"state_dict": state}, path)
    return state


def reference_prediction(state, path) -> int:
    """The course's grader written out from its description: PIL -> RGB -> [0, 1] -> (x - 0.5) / 0.5 -> LeNet."""
    x = torch.tensor(np.array(Image.open(path).convert("RGB")), dtype=torch.float64).permute(2, 0, 1)[None] / 255
    x = (x - 0.5) / 0.5
    s = {k: v.double() for k, v in state.items()}
    x = F.max_pool2d(F.relu(F.conv2d(x, s["conv1.weight"], s["conv1.bias"])), 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, s["conv2.weight"], s["conv2.bias"])), 2)
    x = F.relu(F.linear(x.flatten(1), s["fc1.weight"], s["fc1.bias"]))
    x = F.linear(F.relu(F.linear(x, s["fc2.weight"], s["fc2.bias"])), s["fc3.weight"], s["fc3.bias"])
    return int(x.argmax())


@pytest.fixture()
def digits(tmp_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for digit in range(10):
        for index in (1, 2, 3):
            pixels = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{digit}_{index:03d}.png")
    return folder


def test_predictions_and_scores_match_the_course_grader(tmp_path, digits):
    state = course_checkpoint(tmp_path / "Classifier.pth")
    report = score.main(
        score.parse_args(["--images", str(digits), "--course_classifier", str(tmp_path / "Classifier.pth")])
    )
    expected = {p.name: reference_prediction(state, p) for p in digits.iterdir()}
    wrong = {row["file"]: row["predicted"] for row in report["misclassified"]}
    assert all(wrong.get(name, int(name[0])) == predicted for name, predicted in expected.items())
    correct = sum(predicted == int(name[0]) for name, predicted in expected.items())
    assert report["total"] == 30 and report["correct"] == correct


def test_scores_per_digit(tmp_path, digits, capsys):
    # fc3 answers 3 whatever the image: digit 3 is all right, every other digit all wrong
    course_checkpoint(tmp_path / "Classifier.pth", **{"fc3.weight": torch.zeros(10, 64), "fc3.bias": torch.eye(10)[3]})
    argv = ["--images", str(digits), "--course_classifier", str(tmp_path / "Classifier.pth")]
    argv += ["--json", str(tmp_path / "grade.json")]
    score.cli(argv)
    report = json.loads((tmp_path / "grade.json").read_text())
    assert report["accuracy"] == pytest.approx(0.1)
    assert report["per_digit"]["3"]["accuracy"] == 1.0 and report["per_digit"]["4"]["accuracy"] == 0.0
    assert "scored by the course's classifier" in capsys.readouterr().out


@pytest.mark.parametrize(
    "plant, message",
    [
        (lambda f: (f / ".written-by-guided-diffusion-da").write_text("x"), "would stop at .*written-by"),
        (lambda f: (f / "grid").mkdir(), "would stop at .*grid"),
        (lambda f: (f / "7_sub").mkdir(), "would stop at .*7_sub"),
        (lambda f: Image.new("RGB", (32, 32)).save(f / "5_101.png"), "5_101.png: it is 32x32"),
        (lambda f: (f / "2_101.png").write_bytes(b"not an image"), "would stop at .*2_101.png"),
    ],
)
def test_an_entry_the_course_grader_would_fail_on_is_named(tmp_path, digits, capsys, plant, message):
    course_checkpoint(tmp_path / "Classifier.pth")
    plant(digits)
    with pytest.raises(SystemExit) as exit_info:
        score.cli(["--images", str(digits), "--course_classifier", str(tmp_path / "Classifier.pth")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert re.search(message, err), err


class _Payload:
    def __reduce__(self):
        return (open, ("ran-code", "w"))


def test_a_checkpoint_of_another_kind_is_one_line(tmp_path, digits, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "Classifier.pth"
    cases = [
        (lambda: course_checkpoint(bad, **{"fc3.weight": torch.zeros(11, 64)}), "fc3.weight: (11, 64) in the file"),
        (
            lambda: torch.save({"state_dict": {"conv1.weight": torch.zeros(6, 3, 5, 5)}}, bad),
            "9 of its tensors missing",
        ),
        (lambda: torch.save({"epoch": 3}, bad), "is not the course's classifier checkpoint"),
        (lambda: bad.write_bytes(pickle.dumps({"state_dict": _Payload()})), "refused"),
    ]
    for write, message in cases:
        write()
        with pytest.raises(SystemExit):
            score.cli(["--images", str(digits), "--course_classifier", str(bad)])
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "ran-code").exists()


def test_pattern_does_not_apply_to_the_course_grader(tmp_path, digits):
    with pytest.raises(ValueError, match="--pattern does not apply"):
        score.parse_args(["--images", str(digits), "--course_classifier", "C.pth", "--pattern", "*.png"])
