"""The DDIM command on a network with its own code, as the course hands it out: `UNet.py` (a class with
`forward(x, t)`) and `UNet.pt` (a plain state dict), named by `--pretrained UNet.pt --unet_code UNet.py:UNet`."""

import os
import pickle
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from adapters.faces import load_face_noises, save_face_noises
from pipelines.ddim_from_noise import cli as ddim
from pipelines.ddim_from_noise.foreign_unet import ForeignUNetAdapter
from pipelines.ddim_from_noise.pipeline_ddim_from_noise import DDIMFromNoisePipeline

NETWORK_CODE = """
import torch
from torch import nn


class UNet(nn.Module):
    # a noise predictor in the course's interface: forward(x, t) with integer t
    def __init__(self, channels=3, width=8):
        super().__init__()
        self.time = nn.Embedding(1000, width)
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.out = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x, t):
        h = torch.relu(self.inp(x) + self.time(t)[:, :, None, None])
        return self.out(h)
"""


@pytest.fixture()
def course_files(tmp_path):
    """UNet.py and UNet.pt as the course gives them, and two 16x16 noises."""
    (tmp_path / "UNet.py").write_text(NETWORK_CODE)
    namespace = {}
    exec(compile(NETWORK_CODE, "UNet.py", "exec"), namespace)
    torch.manual_seed(0)
    network = namespace["UNet"]()
    torch.save(network.state_dict(), tmp_path / "UNet.pt")
    save_face_noises(tmp_path / "noise", num_noises=2, shape=(3, 16, 16), seed=1)
    return tmp_path, network


def run(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        ddim.cli(argv)
        raise SystemExit(0)
    return exit_info.value.code, capsys.readouterr().err


def args(folder, *extra):
    return [
        "--pretrained",
        str(folder / "UNet.pt"),
        "--unet_code",
        f"{folder / 'UNet.py'}:UNet",
        "--noise_dir",
        str(folder / "noise"),
        "--output_dir",
        str(folder / "out"),
        "--num_inference_steps",
        "3",
        *extra,
    ]


def test_the_command_samples_the_course_network_as_the_python_route_does(course_files, capsys):
    folder, network = course_files
    code, err = run(args(folder), capsys)
    assert code == 0, err
    assert sorted(os.listdir(folder / "out")) == ["00.png", "01.png"]
    pipe = DDIMFromNoisePipeline.from_unet(ForeignUNetAdapter(network, sample_size=16, in_channels=3), "course")
    noises = load_face_noises(folder / "noise")
    expected = pipe([noises["00"], noises["01"]], num_inference_steps=3).images
    for name, image in zip(("00", "01"), expected):
        written = np.asarray(Image.open(folder / "out" / f"{name}.png"))
        assert np.abs(written.astype(int) - np.asarray(image).astype(int)).max() <= 1  # same up to one grey level


def test_a_state_dict_file_without_its_code_is_explained(course_files, capsys):
    folder, _ = course_files
    (folder / "imported").unlink(missing_ok=True)
    (folder / "UNet.py").write_text(NETWORK_CODE + "\nopen(__file__ + '.imported', 'w').close()\n")
    argv = args(folder)
    del argv[2:4]  # no --unet_code
    code, err = run(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "--unet_code UNet.py:UNet" in err
    assert not (folder / "UNet.py.imported").exists()  # code runs only where the user names it


@pytest.mark.parametrize(
    "spec, message",
    [
        ("UNet.py:Net", "defines no torch.nn.Module named Net (it defines UNet)"),
        ("UNet.py", "give the file and the class"),
        ("missing.py:UNet", "is not a file"),
        ("UNet.pt:UNet", "not a Python file"),
    ],
)
def test_a_bad_code_name_is_one_line(course_files, capsys, spec, message):
    folder, _ = course_files
    argv = args(folder)
    argv[3] = str(folder / spec)
    code, err = run(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (folder / "out").exists()


def test_a_state_dict_that_does_not_fit_names_the_tensors(course_files, capsys):
    folder, network = course_files
    state = network.state_dict()
    state["inp.weight"] = torch.zeros(8, 3, 5, 5)
    del state["out.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, folder / "UNet.pt")
    code, err = run(args(folder), capsys)
    assert code == 2 and err.count("\n") == 1
    assert "1 of its tensors missing (e.g. out.bias)" in err and "1 that are not part of it (e.g. extra.weight)" in err
    assert "1 of another shape (e.g. inp.weight: (8, 3, 5, 5) in the file, (8, 3, 3, 3) in the model)" in err
    assert not (folder / "out").exists()


class _Payload:
    def __reduce__(self):
        return (open, ("ran-code", "w"))


@pytest.mark.parametrize(
    "content, message",
    [
        (lambda path: torch.save(torch.zeros(3), path), "holds a Tensor, not a state dict"),
        (lambda path: torch.save([torch.zeros(3)], path), "holds a list, not a state dict"),
        (lambda path: torch.save({"step": 3}, path), "'step' is not a tensor"),
        (lambda path: path.write_bytes(b"not a torch file"), "refused"),
        (lambda path: path.write_bytes(pickle.dumps({"w": _Payload()})), "refused"),
    ],
)
def test_a_file_that_is_not_a_state_dict_is_one_line(course_files, capsys, monkeypatch, content, message):
    folder, _ = course_files
    monkeypatch.chdir(folder)
    content(folder / "UNet.pt")
    code, err = run(args(folder), capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (folder / "ran-code").exists()


def test_a_network_that_needs_arguments_or_fails_to_import(course_files, capsys):
    folder, _ = course_files
    (folder / "UNet.py").write_text(NETWORK_CODE.replace("channels=3, width=8", "channels, width"))
    code, err = run(args(folder), capsys)
    assert code == 2 and "UNet() cannot be built with its defaults" in err
    (folder / "UNet.py").write_text(textwrap.dedent("import no_such_module\n"))
    code, err = run(args(folder), capsys)
    assert code == 2 and err.count("\n") == 1 and "ModuleNotFoundError" in err
