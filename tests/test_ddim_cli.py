"""The `python -m pipelines.ddim_from_noise` commands: sample, score and noise."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import UNet2DModel

from adapters.folders import record_folder
from pipelines.ddim_from_noise import cli as ddim
from pipelines.ddim_from_noise.pipeline_ddim_from_noise import DDIMFromNoisePipeline
from tests.tiny_models import tiny_cfg_folder, tiny_unet

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tiny_unet().save_pretrained(folder)
    return folder


def sample_args(model_dir, noise_dir, output_dir, *extra):
    return [
        "--pretrained",
        str(model_dir),
        "--noise_dir",
        str(noise_dir),
        "--output_dir",
        str(output_dir),
        *extra,
    ]


def test_sample_writes_one_png_per_noise_equal_to_the_pipeline(model_dir, tmp_path):
    ddim.main(["noise", "--output_dir", str(tmp_path / "noise"), "--num_noises", "3", "--resolution", "8"])
    written = ddim.main(sample_args(model_dir, tmp_path / "noise", tmp_path / "out", "--num_inference_steps", "5"))
    assert [p.name for p in written] == ["00.png", "01.png", "02.png"]
    assert sorted(os.listdir(tmp_path / "out")) == ["00.png", "01.png", "02.png"]  # no temporary files

    pipe = DDIMFromNoisePipeline.from_pretrained(model_dir, preset="course")
    pipe.set_progress_bar_config(disable=True)
    noise = torch.load(tmp_path / "noise" / "01.pt", weights_only=True)
    expected = np.asarray(pipe(noise, num_inference_steps=5).images[0])
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(tmp_path / "out" / "01.png")), expected)


def test_eta_positive_is_seeded_per_image_and_independent_of_batch_size(model_dir, tmp_path):
    ddim.main(["noise", "--output_dir", str(tmp_path / "noise"), "--num_noises", "3", "--resolution", "8"])
    common = ["--eta", "0.5", "--num_inference_steps", "4", "--preset", "diffusers"]
    ddim.main(sample_args(model_dir, tmp_path / "noise", tmp_path / "a", *common, "--seed", "1", "--batch_size", "2"))
    ddim.main(sample_args(model_dir, tmp_path / "noise", tmp_path / "b", *common, "--seed", "1", "--batch_size", "3"))
    ddim.main(sample_args(model_dir, tmp_path / "noise", tmp_path / "c", *common, "--seed", "2"))
    for name in ("00.png", "02.png"):
        a, b, c = (np.asarray(PIL.Image.open(tmp_path / d / name)) for d in "abc")
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_sample_refuses_noise_that_does_not_match_the_model(model_dir, tmp_path):
    ddim.main(["noise", "--output_dir", str(tmp_path / "noise"), "--num_noises", "1", "--resolution", "16"])
    with pytest.raises(ValueError, match=r"expected shape \(3, 8, 8\)"):
        ddim.main(sample_args(model_dir, tmp_path / "noise", tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="noise folder"):
        ddim.main(sample_args(model_dir, tmp_path / "missing", tmp_path / "out"))


def test_score_prints_each_pair_and_the_mean(tmp_path, capsys):
    for folder, values in (("gt", (0, 100)), ("pred", (2, 104))):
        (tmp_path / folder).mkdir()
        for i, value in enumerate(values):
            PIL.Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(tmp_path / folder / f"0{i}.png")
    mean = ddim.main(["score", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")])
    assert mean == pytest.approx(10.0)
    assert capsys.readouterr().out.splitlines() == ["00.png\t4.0000", "01.png\t16.0000", "mean\t10.0000"]


def test_module_entry_point_runs_as_a_subprocess(model_dir, tmp_path):
    ddim.main(["noise", "--output_dir", str(tmp_path / "noise"), "--num_noises", "2", "--resolution", "8"])
    command = [sys.executable, "-m", "pipelines.ddim_from_noise"]
    command += sample_args(model_dir, tmp_path / "noise", tmp_path / "out", "--num_inference_steps", "2")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    subprocess.run(command, check=True, cwd=REPO, env=env)
    assert sorted(os.listdir(tmp_path / "out")) == ["00.png", "01.png"]


def test_a_non_empty_output_folder_needs_overwrite_and_is_replaced_whole(model_dir, tmp_path):
    ddim.main(["noise", "--output_dir", str(tmp_path / "noise"), "--num_noises", "2", "--resolution", "8"])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.png").write_bytes(b"old")
    record_folder(tmp_path / "out")  # an earlier run of this project
    argv = sample_args(model_dir, tmp_path / "noise", tmp_path / "out", "--num_inference_steps", "2")
    with pytest.raises(FileExistsError, match="--overwrite"):
        ddim.main(argv)
    ddim.main([*argv, "--overwrite"])
    assert sorted(os.listdir(tmp_path / "out")) == ["00.png", "01.png"]  # the stale file went too
    with pytest.raises(FileExistsError, match="--overwrite"):
        ddim.main(["noise", "--output_dir", str(tmp_path / "noise"), "--num_noises", "2"])


def test_a_stored_diffusers_pipeline_is_sampled_with_its_own_settings(model_dir, tmp_path):
    # Without --preset, a saved pipeline is sampled with the settings it stores, not with the course preset.
    unet = UNet2DModel.from_pretrained(model_dir)
    saved = DDIMFromNoisePipeline.from_unet(unet, "diffusers")
    saved.save_pretrained(tmp_path / "pipeline")
    ddim.main(["noise", "--output_dir", str(tmp_path / "noise"), "--num_noises", "1", "--resolution", "8"])
    ddim.main(sample_args(tmp_path / "pipeline", tmp_path / "noise", tmp_path / "out", "--num_inference_steps", "3"))
    saved.set_progress_bar_config(disable=True)
    expected = saved(torch.load(tmp_path / "noise" / "00.pt", weights_only=True), num_inference_steps=3).images[0]
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(tmp_path / "out" / "00.png")), np.asarray(expected))


@pytest.mark.parametrize(
    "extra, error, message",
    [
        (["--num_inference_steps", "0"], ValueError, r"--num_inference_steps must be an int in \[1, 1000\], got 0"),
        (["--num_inference_steps", "1001"], ValueError, r"--num_inference_steps must be an int in \[1, 1000\]"),
        (["--eta", "nan"], ValueError, r"--eta must be a number in \[0, 1\], got nan"),
        (["--eta", "1.5"], ValueError, r"--eta must be a number in \[0, 1\], got 1.5"),
        (["--batch_size", "0"], ValueError, "--batch_size must be >= 1"),
    ],
)
def test_bad_arguments_fail_before_the_model_loads(model_dir, tmp_path, monkeypatch, extra, error, message):
    (tmp_path / "noise").mkdir()
    monkeypatch.setattr(UNet2DModel, "from_pretrained", lambda *a, **k: pytest.fail("the model loaded"))
    with pytest.raises(error, match=message):
        ddim.main(sample_args(model_dir, tmp_path / "noise", tmp_path / "out", *extra))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("call", [{"eta": 1.5}, {"eta": float("nan")}, {"num_inference_steps": 0}])
def test_the_command_and_the_pipeline_refuse_with_one_message(model_dir, tmp_path, call):
    """One rule set: the command's message is the pipeline's, with the flag's spelling."""
    from pipelines.ddim_from_noise.pipeline_ddim_from_noise import DDIMFromNoisePipeline

    flag, value = next(iter(call.items()))
    pipe = DDIMFromNoisePipeline.from_pretrained(model_dir)
    with pytest.raises(ValueError) as from_pipeline:
        pipe(torch.zeros(1, 3, 8, 8), **call)
    (tmp_path / "noise").mkdir()
    with pytest.raises(ValueError) as from_command:
        ddim.main(sample_args(model_dir, tmp_path / "noise", tmp_path / "out", f"--{flag}", str(value)))
    assert str(from_command.value) == str(from_pipeline.value).replace(flag, f"--{flag}", 1)


def test_the_step_limit_is_the_saved_pipelines_own(tmp_path):
    """A saved pipeline trained on 2000 steps takes up to 2000; a preset (1000 steps) replaces its scheduler."""
    from diffusers import DDIMScheduler

    from pipelines.ddim_from_noise.pipeline_ddim_from_noise import DDIMFromNoisePipeline

    DDIMFromNoisePipeline(tiny_unet(), DDIMScheduler(num_train_timesteps=2000)).save_pretrained(tmp_path / "saved")
    DDIMFromNoisePipeline.check_call_arguments(tmp_path / "saved", num_inference_steps=2000)
    with pytest.raises(ValueError, match=r"num_inference_steps must be an int in \[1, 1000\], got 2000"):
        DDIMFromNoisePipeline.check_call_arguments(tmp_path / "saved", num_inference_steps=2000, preset="course")
    with pytest.raises(ValueError, match=r"num_inference_steps must be an int in \[1, 2000\], got 2001"):
        DDIMFromNoisePipeline.check_call_arguments(tmp_path / "saved", num_inference_steps=2001)


def test_a_missing_local_model_folder_is_named_not_a_hub_error(tmp_path, monkeypatch):
    (tmp_path / "noise").mkdir()
    with pytest.raises(FileNotFoundError, match="--pretrained folder .*missing does not exist"):
        ddim.main(sample_args(tmp_path / "missing", tmp_path / "noise", tmp_path / "out"))
    # "runs/model" also looks like a Hub id; offline it must still be reported as a missing folder.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match="runs/model does not exist, and HF_HUB_OFFLINE is set"):
        ddim.main(sample_args("runs/model", tmp_path / "noise", tmp_path / "out"))


def test_absurd_noise_is_refused_before_sampling(model_dir, tmp_path):
    (tmp_path / "noise").mkdir()
    torch.save(torch.full((1, 3, 8, 8), 1e30), tmp_path / "noise" / "00.pt")
    with pytest.raises(ValueError, match=r"00\.pt: values reach 1e\+30 in magnitude"):
        ddim.main(sample_args(model_dir, tmp_path / "noise", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_a_conditional_model_is_refused_naming_the_conditional_command(tmp_path):
    tiny_cfg_folder(tmp_path / "cfg", attention=False)
    ddim.main(["noise", "--output_dir", str(tmp_path / "noise"), "--num_noises", "1", "--resolution", "8"])
    with pytest.raises(ValueError, match="class-conditional UNet.*`python -m pipelines.conditional_ddpm"):
        ddim.main(sample_args(tmp_path / "cfg", tmp_path / "noise", tmp_path / "out"))
