"""The GPU suite (benchmarks.gpu_suite) end to end in its dry run (tiny sizes, CPU), the data subset it carries,
its helpers.

The dry run exercises every stage of the GPU run (the same functions, commands and files, only smaller), so
that the suite works the first time it meets a GPU.
"""

import json

import numpy as np
import pytest
import torch

from benchmarks.gpu_suite import cfg_stages, face_count, make_data
from benchmarks.gpu_suite import suite as gpu_suite


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, shared_data):
    shared = shared_data
    out = tmp_path_factory.mktemp("gpu-data")
    args = make_data.parse_args(
        [
            "--source",
            str(shared),
            "--output_dir",
            str(out),
            "--mnistm_train",
            "120",
            "--mnistm_validation",
            "60",
            "--usps_train",
            "150",
            "--usps_validation",
            "60",
        ]
    )
    return shared, out, make_data.main(args)


def test_the_data_subset_holds_the_pixels_training_would_decode_from_the_full_folder(tiny_data):
    from adapters import decode_digits, load_digits
    from adapters.digits import _to_rgb_array, open_image

    shared, out, summary = tiny_data
    assert summary["counts"] == {"mnistm/train": 120, "mnistm/validation": 60, "usps/train": 150, "usps/validation": 60}
    images, labels = decode_digits(load_digits("mnistm", out / "mnistm", "validation"), image_size=28, cache=False)
    values, source_labels = make_data.first_rows(shared / "mnistm" / "validation.parquet", 60)
    expected = np.stack([_to_rgb_array(open_image(v, i), 28) for i, v in enumerate(values)])
    assert torch.equal(images, torch.from_numpy(expected).permute(0, 3, 1, 2))
    assert labels.tolist() == source_labels.tolist()
    assert (out / "lfw_faces" / "train.parquet").is_file()
    with pytest.raises(ValueError, match="over --max_mb"):
        make_data.main(
            make_data.parse_args(
                [
                    "--source",
                    str(shared),
                    "--output_dir",
                    str(out / "x"),
                    "--mnistm_train",
                    "10",
                    "--mnistm_validation",
                    "10",
                    "--max_mb",
                    "0.1",
                ]
            )
        )


@pytest.mark.slow  # every stage of the GPU suite, tiny, on the CPU: about 15 s
def test_dry_run_runs_every_stage_and_writes_the_summary(tiny_data, tmp_path):
    _, data, _ = tiny_data
    out = tmp_path / "suite"
    summary = gpu_suite.main(gpu_suite.parse_args(["--data", str(data), "--output_dir", str(out), "--dry_run"]))
    stages = summary["stages"]
    assert {name: stage["status"] for name, stage in stages.items()} == dict.fromkeys(gpu_suite.STAGES, "ok"), {
        name: stage.get("error") for name, stage in stages.items()
    }
    # (c) old and new side by side, from the child process
    assert [(r["measure"], r["variant"]) for r in stages["timing"]["rows"]] == [
        ("train", "old"),
        ("train", "new"),
        ("ddpm", "new"),
        ("ddim", "new"),
        ("fast", "new"),
    ]
    # (a) a pipeline folder; (b) three samplers, each 10 course-named images scored
    assert (out / "cfg-model" / "model_index.json").is_file() and stages["train"]["steps"] == 3
    # the dry run forces bf16 and channels_last so that the GPU's likely choices run here first
    argv = stages["train"]["argv"]
    assert argv[argv.index("--mixed_precision") + 1] == "bf16" and "--channels_last" in argv
    assert {r["variant"] for r in stages["sample"]["rows"]} == {"new+bf16+channels_last"}
    assert [r["sampler"] for r in stages["sample"]["rows"]] == ["ddpm", "ddim", "dpm"]
    for row in stages["sample"]["rows"]:
        folder = out / "samples" / f"{row['sampler']}-{row['steps']}"
        assert sorted(p.name for p in folder.glob("*.png")) == [f"{d}_001.png" for d in range(10)]
        assert 0 <= row["accuracy"] <= 1
    assert stages["sample"]["course_output"]["ratio"] > 0
    # (d) the three modes for each of the two recipes (and the mean teacher for the improved one), through
    # train_dann's own command line
    rows = stages["dann"]["rows"]
    assert [(r["recipe"], r["mode"]) for r in rows] == [
        ("report", "source_only"),
        ("report", "dann"),
        ("report", "target_only"),
        ("improved", "source_only"),
        ("improved", "dann"),
        ("improved", "mean_teacher"),
        ("improved", "target_only"),
    ]
    assert all(0 <= r["target_val_accuracy"] <= 1 for r in rows)
    assert (out / "dann" / "report-dann" / "model.safetensors").is_file()
    # (e) a face model, the four figures, faces counted in 40 eta-grid images for both models
    faces = stages["faces"]
    assert sorted(p.name for p in (out / "faces-figures").glob("*.png")) == [
        "eta_0.5_twice.png",
        "eta_grid.png",
        "lerp.png",
        "slerp.png",
    ]
    assert faces["eta_grid_faces"]["shipped"]["total"] == faces["eta_grid_faces"]["trained"]["total"] == 40
    # (f) the summary
    written = json.loads((out / "summary.json").read_text())
    assert written["dry_run"] and written["environment"]["packages"]["torch"] == torch.__version__
    text = (out / "summary.md").read_text()
    for heading in ("## timing: ok", "## train: ok", "## sample: ok", "## dann: ok", "## faces: ok"):
        assert heading in text


def test_a_failing_stage_is_recorded_and_the_suite_goes_on():
    record = {}
    assert gpu_suite.run_guarded_stage(record, "train", lambda: 1 / 0) is None
    assert record["train"]["status"] == "failed" and record["train"]["error"].startswith("ZeroDivisionError")


def test_the_suite_refuses_a_data_folder_of_another_layout(tmp_path):
    (tmp_path / "mnistm").mkdir()
    with pytest.raises(FileNotFoundError, match="lacks usps, lfw_faces"):
        gpu_suite.parse_args(["--data", str(tmp_path), "--output_dir", str(tmp_path / "out")])


def test_fast_settings_are_chosen_only_where_the_timing_shows_a_gain():
    rows = [
        {"measure": "train", "variant": "new", "ms_per_step": 10.0},
        {"measure": "train", "variant": "new+bf16", "ms_per_step": 7.0},
        {"measure": "train", "variant": "new+channels_last", "ms_per_step": 9.5},
        {"measure": "ddpm", "variant": "new", "timed_s": 5.0, "finite": True},
        {"measure": "ddpm", "variant": "new+bf16", "timed_s": 3.0, "finite": False},
        {"measure": "ddpm", "variant": "new+channels_last", "timed_s": 4.0, "finite": True},
    ]
    choice = cfg_stages.choose_fast_settings(rows)
    assert choice == {
        "train_bf16": True,
        "train_channels_last": False,
        "sample_variant": "new+channels_last",
        "train_ms_per_step": 10.0,
    }


def test_noise_is_not_a_face_and_real_faces_mostly_are():
    generator = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    blobs = torch.stack([torch.exp(-((xx - c) ** 2 + yy**2) * 4) for c in torch.linspace(-0.3, 0.3, 20)])[:, None]
    faces = blobs + 0.05 * torch.rand(blobs.shape, generator=generator)
    noise = torch.rand((8, 1, 16, 16), generator=generator)
    assert face_count.count_faces(noise, faces)["faces"] == 0
    assert face_count.count_faces(faces, faces)["faces"] == 20  # each is itself: correlation 1
    # Faint pixel-level noise (a checkerboard of +-0.02) keeps the correlation of a face but makes it rough:
    # not a clean face, as the noisy eta-grid cells of an under-trained model are not.
    checker = ((torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 2 - 1).float()
    report = face_count.count_faces(faces + 0.02 * checker, faces)
    assert min(report["per_image"]) >= report["threshold"]
    assert min(report["roughness"]) > report["max_roughness"] and report["faces"] == 0
