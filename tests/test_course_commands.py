"""`python -m pipelines.course hw2_1 | hw2_2 | hw2_3`: the course's three scripts with exactly their arguments, and
every folder the project's commands write, read the way the course's graders read them."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from adapters.faces import save_face_noises
from pipelines.course import commands as course
from tests.test_foreign_unet_command import NETWORK_CODE
from tests.tiny_models import tiny_cfg_folder

ROOT = Path(__file__).resolve().parents[1]


def run(*argv, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def read_like_the_course_digit_grader(folder: Path, size: int = 8) -> dict[str, int]:
    """What the course's digit_classifier.py does before it classifies: every entry, label int(name[0]) (the
    tests' tiny models draw 8x8 digits, the shipped ones the course's 28x28)."""
    labels = {}
    for name in os.listdir(folder):
        labels[name] = int(name[0])  # a hidden file or any other name ends the course's run here
        with Image.open(folder / name) as image:
            assert image.convert("RGB").size == (size, size)
    return labels


def assert_holds_exactly(folder: Path, names: set[str]) -> None:
    assert set(os.listdir(folder)) == names, sorted(set(os.listdir(folder)) ^ names)


@pytest.mark.parametrize(
    "path, domain",
    [
        ("hw2_data/digits/usps/data", "usps"),
        ("hw2_data/digits/svhn/data", "svhn"),
        ("/data/SVHN_test", "svhn"),
        ("usps_runs/svhn/data", "svhn"),  # the deepest part that names one decides
    ],
)
def test_the_target_domain_is_told_from_the_path(path, domain):
    assert course.target_domain(path) == domain


def test_a_path_naming_neither_or_both_asks_for_target(tmp_path):
    with pytest.raises(ValueError, match="neither svhn nor usps.*--target"):
        course.target_domain(str(tmp_path / "digits" / "data"))
    with pytest.raises(ValueError, match="names both"):
        course.target_domain("hw2/usps_vs_svhn/data")
    (tmp_path / "usps").mkdir()
    os.symlink(tmp_path / "usps", tmp_path / "target")
    assert course.target_domain(str(tmp_path / "target")) == "usps"  # the link's target names it


def test_hw2_1_writes_the_digit_folder_the_course_grades(tmp_path):
    model = tiny_cfg_folder(tmp_path / "model", num_train_timesteps=20)
    result = run(
        "pipelines.course", "hw2_1", "out/p1", "--pretrained", str(model), "--images_per_digit", "2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    labels = read_like_the_course_digit_grader(tmp_path / "out" / "p1")
    assert sorted(labels) == sorted(f"{d}_{i:03d}.png" for d in range(10) for i in (1, 2))
    assert os.listdir(tmp_path / "out") == ["p1"]  # nothing beside it either


def test_hw2_1_defaults_to_the_shipped_student_with_the_courses_arguments():
    assert course.hw2_1(["OUT"]) == [
        "pipelines.conditional_ddpm",
        "--pretrained",
        "cfg-mnistm-fast",
        "--output_dir",
        "OUT",
    ]
    assert course.hw2_2(["N", "O", "U.pt"])[:7] == ["pipelines.ddim_from_noise", *course.COURSE_DDIM]


def test_hw2_2_runs_the_courses_network_from_its_state_dict(tmp_path):
    (tmp_path / "UNet.py").write_text(NETWORK_CODE)
    namespace = {}
    exec(compile(NETWORK_CODE, "UNet.py", "exec"), namespace)
    torch.save(namespace["UNet"]().state_dict(), tmp_path / "UNet.pt")
    save_face_noises(tmp_path / "face" / "noise", num_noises=3, shape=(3, 16, 16))
    argv = ["pipelines.course", "hw2_2", "face/noise", "out/p2", "UNet.pt", "--unet_code", "UNet.py:UNet"]
    result = run(*argv, "--num_inference_steps", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_holds_exactly(tmp_path / "out" / "p2", {"00.png", "01.png", "02.png"})
    for name in os.listdir(tmp_path / "out" / "p2"):
        pixels = torch.tensor(list(Image.open(tmp_path / "out" / "p2" / name).getdata()))
        assert pixels.min() == 0 and pixels.max() == 255  # the course preset min-max normalises each image
    result = run(*argv[:5], cwd=tmp_path)  # the state dict without its code
    assert result.returncode == 2 and "--unet_code UNet.py:UNet" in result.stderr


def test_hw2_3_writes_the_csv_for_the_domain_of_the_path(tmp_path):
    data = tmp_path / "hw2_data" / "digits" / "usps" / "data"
    data.mkdir(parents=True)
    for index in range(4):
        Image.new("L", (16, 16), color=index * 60).save(data / f"{index:05d}.png")
    result = run("pipelines.course", "hw2_3", str(data), "out/pred.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader((tmp_path / "out" / "pred.csv").open()))
    assert rows[0] == ["image_name", "label"] and [r[0] for r in rows[1:]] == sorted(os.listdir(data))
    assert all(0 <= int(r[1]) <= 9 for r in rows[1:])
    assert os.listdir(tmp_path / "out") == ["pred.csv"]  # a CSV is a CSV: no temporary beside it

    svhn = tmp_path / "hw2_data" / "digits" / "svhn" / "data"
    svhn.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(svhn / "00000.png")
    result = run("pipelines.course", "hw2_3", str(svhn), "out/svhn.csv", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--svhn_model" in result.stderr


@pytest.mark.slow  # seven commands as subprocesses: a minute on a loaded 2-core machine
def test_every_output_folder_reads_as_the_course_reads_it(tmp_path):
    """Each command that writes an image, noise or CSV folder, then every entry of each folder read as its grader
    reads it: the digit grader's int(name[0]), the DDIM grader's NN.png, the noises' NN.pt, figures as PNGs."""
    model = tiny_cfg_folder(tmp_path / "cfg", num_train_timesteps=20)
    faces = ROOT / "hub_cards" / "ddpm-lfw-faces"
    commands = {
        "digits": ["pipelines.conditional_ddpm", "--pretrained", str(model), "--images_per_digit", "1"],
        "hw2_1": ["pipelines.course", "hw2_1", "OUT", "--pretrained", str(model), "--images_per_digit", "1"],
        "noise": ["pipelines.ddim_from_noise", "noise", "--num_noises", "3", "--resolution", "8"],
        "faces": ["pipelines.ddim_from_noise", "--pretrained", str(faces), "--num_inference_steps", "2"],
        "hw2_2": [
            "pipelines.course",
            "hw2_2",
            str(faces / "noise"),
            "OUT",
            "ddpm-lfw-faces",
            "--num_inference_steps",
            "2",
        ],
        "ddim_figures": ["pipelines.ddim_from_noise.figures", "--pretrained", str(faces), "--num_inference_steps", "1"],
    }
    for name, argv in commands.items():
        out = str(tmp_path / "out" / name)
        argv = [out if a == "OUT" else a for a in argv] + ([] if "OUT" in argv else ["--output_dir", out])
        result = run(*argv, cwd=tmp_path)
        assert result.returncode == 0, (name, result.stderr)
    for name in ("digits", "hw2_1"):
        assert len(read_like_the_course_digit_grader(tmp_path / "out" / name)) == 10
    assert_holds_exactly(tmp_path / "out" / "noise", {"00.pt", "01.pt", "02.pt"})
    for name in ("faces", "hw2_2"):
        assert_holds_exactly(tmp_path / "out" / name, {f"{i:02d}.png" for i in range(10)})
    for entry in os.listdir(tmp_path / "out" / "ddim_figures"):
        assert not entry.startswith(".") and Image.open(tmp_path / "out" / "ddim_figures" / entry).format == "PNG"
    result = run("pipelines.digit_classifier", "--images", "out/digits", "--json", "out/score.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "out")) == sorted([*commands, "score.json"])  # no lock, staging or record
