"""The figures command on a tiny model: every figure is written, and missing noises are an error."""

import PIL.Image
import pytest

from adapters.faces import save_face_noises
from pipelines.ddim_from_noise import figures as ddim_figures
from tests.tiny_models import tiny_unet


@pytest.fixture()
def model_dir(tmp_path):
    tiny_unet(channels=1).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def figure_args(model_dir, noise_dir, output_dir, *extra):
    return ddim_figures.parse_args(
        ["--pretrained", str(model_dir), "--noise_dir", str(noise_dir), "--output_dir", str(output_dir), *extra]
    )


def test_figures_command_writes_all_four_figures(model_dir, tmp_path):
    save_face_noises(tmp_path / "noise", num_noises=4, shape=(1, 8, 8))
    args = figure_args(model_dir, tmp_path / "noise", tmp_path / "figures", "--num_inference_steps", "2")
    paths = ddim_figures.main(args)
    assert [p.name for p in paths] == ["eta_grid.png", "eta_0.5_twice.png", "slerp.png", "lerp.png"]
    sizes = {p.name: PIL.Image.open(p).size for p in paths}
    assert sizes["eta_grid.png"][1] > 2 * sizes["eta_0.5_twice.png"][1]  # ten rows against two
    assert sizes["slerp.png"][0] > 2 * sizes["eta_grid.png"][0] / 2  # eleven columns
    assert sorted(f.name for f in (tmp_path / "figures").iterdir()) == sorted(sizes)  # no temporaries


def test_figures_command_needs_noises_00_to_03(model_dir, tmp_path):
    save_face_noises(tmp_path / "noise", num_noises=3, shape=(1, 8, 8))
    args = figure_args(model_dir, tmp_path / "noise", tmp_path / "f")
    with pytest.raises(FileNotFoundError, match="03.pt"):
        ddim_figures.main(args)


def test_figures_command_checks_arguments_before_any_work(model_dir, tmp_path):
    save_face_noises(tmp_path / "noise", num_noises=4, shape=(1, 8, 8))
    argv = ["--pretrained", str(model_dir), "--noise_dir", str(tmp_path / "noise"), "--output_dir", str(tmp_path)]
    with pytest.raises(ValueError, match="holds the input"):
        ddim_figures.parse_args(argv)  # tmp_path holds the model and the noises
    with pytest.raises(ValueError, match=r"--num_inference_steps must be an int in \[1, 1000\], got 0"):
        ddim_figures.parse_args([*argv, "--num_inference_steps", "0"])
    with pytest.raises(FileNotFoundError, match="--pretrained folder .*missing does not exist"):
        ddim_figures.parse_args(["--pretrained", str(tmp_path / "missing"), *argv[2:]])
    with pytest.raises(FileNotFoundError, match="has no noise/ folder: give --noise_dir"):
        ddim_figures.parse_args(["--pretrained", str(model_dir), "--output_dir", str(tmp_path / "f")])
