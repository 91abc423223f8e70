"""`python -m training.report` on a miniature setting: every artefact exists, and a second run skips."""

import json

import pytest
from diffusers import DDPMScheduler
from PIL import Image

from adapters.faces import save_face_noises
from pipelines.ddim_from_noise import cli as ddim_cli
from pipelines.digit_classifier.modeling_digit_classifier import DigitClassifier
from tests.tiny_models import tiny_cfg_folder, tiny_unet
from training.report import reproduce


@pytest.fixture(scope="module")
def miniature(tmp_path_factory):
    """Tiny random stand-ins for the three shipped checkpoints, in their real formats."""
    root = tmp_path_factory.mktemp("miniature")
    tiny_cfg_folder(root / "cfg", attention=False)
    DigitClassifier(block_channels=(4,), image_size=8).save_pretrained(root / "classifier")

    faces = root / "faces"
    tiny_unet(channels=1).save_pretrained(faces / "unet")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(faces / "scheduler")
    save_face_noises(faces / "noise", num_noises=4, shape=(1, 8, 8), seed=0)
    ddim_cli.main(
        [
            "--pretrained",
            str(faces),
            "--noise_dir",
            str(faces / "noise"),
            "--output_dir",
            str(faces / "GT"),
            "--num_inference_steps",
            "2",
        ]
    )
    return root


def _args(miniature, output_dir, *extra):
    return reproduce.parse_args(
        [
            "--profile",
            "quick",
            "--output_dir",
            str(output_dir),
            "--device",
            "cpu",
            "--cfg_pretrained",
            str(miniature / "cfg"),
            "--classifier",
            str(miniature / "classifier"),
            "--faces_pretrained",
            str(miniature / "faces"),
            "--cfg_steps",
            "2",
            "--images_per_digit",
            "1",
            "--sweep_samples",
            "1",
            "--ddim_steps",
            "2",
            "--tsne_per_domain",
            "20",
            "--dann_train_args",
            "--epochs 1 --steps_per_epoch 2 --batch_size 32",
            *extra,
        ]
    )


def test_quick_profile_writes_every_artefact_and_resumes(miniature, tmp_path):
    first = reproduce.main(_args(miniature, tmp_path))
    assert first["skipped"] == []
    report = (tmp_path / "report.md").read_text()

    expected_figures = [
        "cfg_figures/architecture.png",
        "cfg_figures/architecture.txt",
        "cfg_figures/grid_10x10.png",
        "cfg_figures/reverse_process_0.png",
        "cfg_figures/guidance_sweep.png",
        "ddim_figures/eta_grid.png",
        "ddim_figures/eta_0.5_twice.png",
        "ddim_figures/slerp.png",
        "ddim_figures/lerp.png",
        "dann_mnistm_usps/mnistm-usps-tsne-digit.png",
        "dann_mnistm_usps/mnistm-usps-tsne-domain.png",
    ]
    for name in expected_figures:
        path = tmp_path / "figures" / name
        assert path.is_file(), name
        if name.endswith(".png"):
            with Image.open(path) as image:
                image.verify()
            assert f"](figures/{name})" in report, f"{name} is not shown in the report"
    assert len(list((tmp_path / "work" / "digits").glob("*.png"))) == 10

    accuracy = json.loads((tmp_path / "figures" / "cfg_accuracy" / "digit_accuracy.json").read_text())
    assert accuracy["total"] == 10 and 0.0 <= accuracy["accuracy"] <= 1.0
    mse = json.loads((tmp_path / "figures" / "ddim_mse" / "mse.json").read_text())
    assert sorted(mse) == ["00", "01", "02", "03"]
    assert all(value < 1e-6 for value in mse.values())  # the ground truth was made by the same sampler
    dann = json.loads((tmp_path / "stages" / "dann_mnistm_usps.json").read_text())["result"]
    assert set(dann["modes"]) == {"source_only", "dann", "target_only"}
    for heading in ("Accuracy of the generated digits", "MSE against ground truth", "| DANN |", "0.8864"):
        assert heading in report

    second = reproduce.main(_args(miniature, tmp_path))
    assert sorted(second["skipped"]) == sorted(first["records"])

    changed = reproduce.main(_args(miniature, tmp_path, "--redo", "ddim_mse"))
    assert "ddim_mse" not in changed["skipped"] and "cfg_figures" in changed["skipped"]


def test_unknown_stage_to_redo(miniature, tmp_path):
    with pytest.raises(ValueError, match="unknown stage"):
        reproduce.main(_args(miniature, tmp_path, "--redo", "everything"))


def test_full_profile_needs_data():
    with pytest.raises(SystemExit):
        reproduce.parse_args(["--profile", "full"])
