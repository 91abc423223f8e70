"""The course-output command's output hygiene: validate first, refuse to mix runs, write the folder whole."""

import subprocess
import sys
from pathlib import Path

import pytest
from diffusers import DPMSolverMultistepScheduler

from adapters.folders import record_folder
from pipelines import ConditionalDDPMPipeline
from pipelines.conditional_ddpm import course_output
from tests.test_cfg_pipeline import TRAIN_STEPS, get_dummy_components

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cfg") / "model"
    ConditionalDDPMPipeline(**get_dummy_components(sample_size=28)).save_pretrained(folder)
    return folder


def argv(model_dir, output_dir, *extra):
    return [
        "--pretrained",
        str(model_dir),
        "--output_dir",
        str(output_dir),
        "--images_per_digit",
        "1",
        "--num_inference_steps",
        "2",
        "--scheduler",
        "dpm",
        *extra,
    ]


def test_a_bad_argument_creates_no_folder(model_dir, tmp_path):
    for bad in (["--guidance", "-1"], ["--guidance", "nan"], ["--guidance", "inf"], ["--num_inference_steps", "0"]):
        with pytest.raises(ValueError, match=bad[0]):
            course_output.parse_args(argv(model_dir, tmp_path / "out", *bad))
    assert not (tmp_path / "out").exists()


def test_refuses_a_non_empty_folder_and_overwrite_removes_stale_files(model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "9_100.png").write_bytes(b"from an earlier, larger run")
    record_folder(out)  # that run was this project's
    with pytest.raises(FileExistsError, match="--overwrite"):
        course_output.parse_args(argv(model_dir, out))
    written = course_output.main(course_output.parse_args(argv(model_dir, out, "--overwrite")))
    expected = [f"{digit}_001.png" for digit in range(10)]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in written) == expected
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    assert not list(tmp_path.glob(".out-*")), "staging folders must not be left behind"


def test_a_failed_run_leaves_the_previous_output_untouched(model_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    course_output.main(course_output.parse_args(argv(model_dir, out)))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_call(*args, **kwargs):
        raise RuntimeError("simulated crash in the middle of sampling")

    monkeypatch.setattr(ConditionalDDPMPipeline, "__call__", broken_call)
    with pytest.raises(RuntimeError, match="simulated crash"):
        course_output.main(course_output.parse_args(argv(model_dir, out, "--overwrite")))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not list(tmp_path.glob(".out-*"))


def test_without_sampler_flags_the_folder_samples_with_its_own_scheduler_and_steps(tmp_path, monkeypatch):
    folder = tmp_path / "dpm-model"
    components = get_dummy_components(sample_size=28)
    components["scheduler"] = DPMSolverMultistepScheduler(num_train_timesteps=TRAIN_STEPS)
    ConditionalDDPMPipeline(**components).save_pretrained(folder)
    sampled = []
    call = ConditionalDDPMPipeline.__call__

    def spy(self, *args, **kwargs):
        output = call(self, *args, **kwargs)
        sampled.append((type(self.scheduler).__name__, self.scheduler.num_inference_steps))
        return output

    monkeypatch.setattr(ConditionalDDPMPipeline, "__call__", spy)
    argv = ["--pretrained", str(folder), "--images_per_digit", "1", "--digits", "3"]
    course_output.main(course_output.parse_args([*argv, "--output_dir", str(tmp_path / "a")]))
    assert sampled == [("DPMSolverMultistepScheduler", 10)]  # the folder's scheduler, the steps it needs
    course_output.main(course_output.parse_args([*argv, "--output_dir", str(tmp_path / "b"), "--scheduler", "ddim"]))
    assert sampled[-1] == ("DDIMScheduler", TRAIN_STEPS)  # 50, capped at the trained steps


def test_user_error_is_one_line_and_exit_status_2(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.conditional_ddpm",
            "--pretrained",
            str(tmp_path / "none"),
            "--output_dir",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: --pretrained") and "does not exist" in done.stderr


@pytest.mark.parametrize(
    "call",
    [
        {"guidance": float("nan")},
        {"guidance": -1.0},
        {"num_inference_steps": 0},
        {"num_inference_steps": TRAIN_STEPS + 1},
    ],
)
def test_the_command_and_the_pipeline_refuse_with_one_message(model_dir, tmp_path, monkeypatch, call):
    """One rule set: the command's message is the pipeline's, with the flag's spelling, and comes before any weight
    loads."""
    flag, value = next(iter(call.items()))
    with pytest.raises(ValueError) as from_pipeline:
        pipe = ConditionalDDPMPipeline.from_pretrained(model_dir)
        pipe(digit=3, **call)
    monkeypatch.setattr(
        ConditionalDDPMPipeline, "from_pretrained", lambda *a, **k: pytest.fail("loaded before the checks")
    )
    with pytest.raises(ValueError) as from_command:
        course_output.parse_args(argv(model_dir, tmp_path / "out", f"--{flag}", str(value)))
    assert str(from_command.value) == str(from_pipeline.value).replace(flag, f"--{flag}", 1)
    assert not (tmp_path / "out").exists()


def test_check_call_arguments_reads_the_folder_before_any_weight(model_dir, monkeypatch):
    from diffusers import UNet2DModel

    monkeypatch.setattr(UNet2DModel, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    ConditionalDDPMPipeline.check_call_arguments(model_dir, guidance=0.5, num_inference_steps=TRAIN_STEPS)
    with pytest.raises(ValueError, match=f"between 1 and the {TRAIN_STEPS} steps the model was trained with"):
        ConditionalDDPMPipeline.check_call_arguments(model_dir, num_inference_steps=TRAIN_STEPS + 1)
    with pytest.raises(ValueError, match="give guidance .* or guidance_scale .* not both"):
        ConditionalDDPMPipeline.check_call_arguments(model_dir, guidance=1.0, guidance_scale=2.0)
