"""train_distill.py end to end on a tiny teacher: paths reused, exact resume, the exported few-step folder."""

import json

import pytest
import torch
from diffusers import LCMScheduler
from safetensors.torch import load_file

from pipelines.conditional_ddpm.pipeline_conditional_ddpm import ConditionalDDPMPipeline
from tests.tiny_models import tiny_cfg_folder
from training import train_distill
from training.distill.trajectories import PathSettings, read_settings, shard_labels


def flags(tmp_path, teacher, *extra):
    return [
        "--teacher", str(teacher), "--student_init", str(teacher), "--output_dir", str(tmp_path / "student"),
        "--num_paths", "20", "--shard_size", "10", "--teacher_batch_size", "10", "--solver_steps", "3",
        "--default_steps", "2", "--max_train_steps", "4", "--train_batch_size", "6", "--logging_steps", "2",
        "--checkpointing_steps", "2", "--validation_size", "8", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return tiny_cfg_folder(tmp_path_factory.mktemp("teacher") / "cfg", num_train_timesteps=30)


def test_paths_are_the_teachers_solver_states_and_end_points(tmp_path, teacher):
    train_distill.main(train_distill.parse_args(flags(tmp_path, teacher)))
    shard = load_file(str(tmp_path / "student-teacher-paths" / "paths-0000.safetensors"))
    assert shard["states"].shape == (10, 3, 3, 8, 8) and shard["end_points"].shape == (10, 3, 8, 8)
    assert torch.equal(shard["labels"], shard_labels(10))
    assert shard["timesteps"].tolist() == [29, 19, 9]  # trailing DPM-Solver grid = LCMScheduler's grid
    # the first state is the noise; the end point is what the teacher pipeline draws from it
    pipe = ConditionalDDPMPipeline.from_pretrained(teacher)
    from pipelines.conditional_ddpm.schedulers import make_scheduler

    pipe.scheduler = make_scheduler("dpm", pipe.scheduler.config)
    out = pipe(digit=shard["labels"][:3].tolist(), num_inference_steps=3, latents=shard["states"][:3, 0],
               output_type="latent")  # fmt: skip
    torch.testing.assert_close(out.images.clamp(-1, 1), shard["end_points"][:3], atol=1e-5, rtol=0)


def test_rerun_reuses_paths_and_resume_is_exact(tmp_path, teacher):
    whole = train_distill.main(train_distill.parse_args(flags(tmp_path / "a", teacher)))
    shards = sorted((tmp_path / "a" / "student-teacher-paths").glob("paths-*.safetensors"))
    stamps = [f.stat().st_mtime_ns for f in shards]
    # a run stopped at step 2, then resumed, gives the same history and weights as the whole run
    train_distill.main(train_distill.parse_args(flags(tmp_path / "b", teacher, "--max_train_steps", "2")))
    resumed = train_distill.main(train_distill.parse_args(flags(tmp_path / "b", teacher, "--resume_from_checkpoint",
                                                                "latest")))  # fmt: skip
    assert [h["step"] for h in resumed] == [4]
    assert resumed[-1]["loss"] == pytest.approx(whole[-1]["loss"], rel=1e-5)
    a = load_file(str(tmp_path / "a" / "student" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "student" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    train_distill.main(train_distill.parse_args(flags(tmp_path / "a", teacher)))  # a repeat: shards untouched
    assert [f.stat().st_mtime_ns for f in shards] == stamps


def test_exported_student_samples_in_its_default_steps_with_guidance_built_in(tmp_path, teacher):
    train_distill.main(train_distill.parse_args(flags(tmp_path, teacher)))
    folder = tmp_path / "student"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["distilled_guidance"] == 2.0 and index["default_inference_steps"] == 2
    pipe = ConditionalDDPMPipeline.from_pretrained(folder)
    assert isinstance(pipe.scheduler, LCMScheduler)
    batches = []
    pipe.unet.register_forward_hook(lambda module, inputs, output: batches.append(inputs[0].shape[0]))
    images = pipe(digit=3, num_images_per_digit=2).images
    assert len(images) == 2 and batches == [2, 2]  # two steps, one forward each: no null-class branch
    pipe(digit=3, guidance=2.0, num_inference_steps=1)  # the built-in w may be named
    with pytest.raises(ValueError, match="distilled with the guidance built in at w = 2"):
        pipe(digit=3, guidance=3.0)
    with pytest.raises(ValueError, match="between 1 and the 3 teacher steps"):
        pipe(digit=3, num_inference_steps=4)
    assert "distilled from `cfg`" in (folder / "README.md").read_text()
    assert (folder / "samples.png").is_file()


def test_shards_of_other_settings_and_bad_flags_are_refused(tmp_path, teacher):
    train_distill.main(train_distill.parse_args(flags(tmp_path, teacher)))
    paths = tmp_path / "student-teacher-paths"
    assert read_settings(paths / "paths-0000.safetensors").guidance == 2.0
    other = flags(tmp_path, teacher, "--guidance", "1.0", "--output_dir", str(tmp_path / "other"), "--paths_dir",
                  str(paths))  # fmt: skip
    with pytest.raises(ValueError, match="teacher paths of other settings"):
        train_distill.main(train_distill.parse_args(other))
    for bad, message in [
        (["--num_paths", "15"], "multiple of it"),
        (["--default_steps", "5"], "exceeds --solver_steps"),
        (["--train_batch_size", "0"], "--train_batch_size must be >= 1"),
        (["--teacher", str(tmp_path / "missing")], "does not exist"),
    ]:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            train_distill.parse_args(flags(tmp_path, teacher, *bad))
    assert PathSettings("x", 2.0, 3, 10, 0) != PathSettings("x", 2.0, 3, 10, 1)


def test_course_output_command_samples_a_student_and_refuses_other_guidance_or_sampler(tmp_path, teacher):
    from pipelines.conditional_ddpm import course_output

    train_distill.main(train_distill.parse_args(flags(tmp_path, teacher)))
    student = str(tmp_path / "student")
    common = ["--pretrained", student, "--output_dir", str(tmp_path / "digits"), "--images_per_digit", "2"]
    with pytest.raises(
        ValueError, match=r"distilled with the guidance built in at w = 2; it cannot sample at w = 3 \(--guidance\)"
    ):
        course_output.parse_args([*common, "--guidance", "3"])
    with pytest.raises(ValueError, match="samples with its own LCMScheduler, not --scheduler dpm"):
        course_output.parse_args([*common, "--scheduler", "dpm"])
    written = course_output.main(course_output.parse_args([*common, "--digits", "3", "7"]))
    assert sorted(p.name for p in written) == ["3_001.png", "3_002.png", "7_001.png", "7_002.png"]
