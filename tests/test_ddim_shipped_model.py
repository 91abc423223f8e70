"""The shipped LFW face DDPM: a small self-describing folder whose ground truth the command reproduces.

Also the check the course's grader makes: images from `python -m pipelines.ddim_from_noise` against an independent
float64 implementation of the `course` preset, by MSE on the 0-255 scale.
"""

import numpy as np
import PIL.Image
import pytest
import torch
import yaml
from diffusers import UNet2DModel

import hub_cards
from adapters.faces import face_mse, load_face_noises
from pipelines.ddim_from_noise import cli as ddim

SHIPPED = hub_cards.path("ddpm-lfw-faces")


def test_shipped_folder_is_small_and_self_describing():
    size = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert size <= 16 * 2**20
    card = (SHIPPED / "README.md").read_text()
    front_matter = yaml.safe_load(card.split("---")[1])
    # no `datasets`: scikit-image's 100 LFW crops have no Hub id, the card names them in its results instead
    assert {"library_name", "tags", "metrics", "model-index"} <= set(front_matter)
    assert (SHIPPED / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    noises = load_face_noises(SHIPPED / "noise", shape=(1, 32, 32))
    assert list(noises) == [f"{i:02d}" for i in range(10)]
    assert torch.load(SHIPPED / "noise" / "00.pt", weights_only=True).shape == (1, 1, 32, 32)


def test_command_reproduces_the_shipped_ground_truth(tmp_path, capsys):
    ddim.main(["--pretrained", str(SHIPPED), "--noise_dir", str(SHIPPED / "noise"), "--output_dir", str(tmp_path)])
    assert ddim.main(["score", "--pred", str(tmp_path), "--gt", str(SHIPPED / "GT")]) < 0.5
    assert capsys.readouterr().out.count(".png") == 10


def independent_course_ddim(unet, noise):
    """The course convention written from the paper in float64: T = 1000, timesteps 980..0, no clipping."""
    alpha_bars = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000, dtype=np.float64))
    x = noise.double().numpy()
    for t in range(980, -1, -20):
        with torch.no_grad():
            eps = unet(torch.from_numpy(x).float(), t).sample.double().numpy()
        a_t, a_prev = alpha_bars[t], (alpha_bars[t - 20] if t >= 20 else 1.0)
        x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
        x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
    x = (x - x.min()) / (x.max() - x.min())
    return np.floor(x[0, 0] * 255 + 0.5).astype(np.uint8)


def test_ground_truth_matches_an_independent_implementation(tmp_path):
    unet = UNet2DModel.from_pretrained(SHIPPED, subfolder="unet").eval()
    noises = load_face_noises(SHIPPED / "noise")
    for name in ("00", "07"):
        PIL.Image.fromarray(independent_course_ddim(unet, noises[name][None])).save(tmp_path / f"{name}.png")
        (tmp_path / "gt").mkdir(exist_ok=True)
        (tmp_path / "gt" / f"{name}.png").write_bytes((SHIPPED / "GT" / f"{name}.png").read_bytes())
    scores = face_mse(tmp_path, tmp_path / "gt")
    assert max(scores.values()) < 0.5, scores


# The eta grid's small-eta rows, where the sampler's own noise matters most: the cells of eta 0.1-0.3 from the
# noises 00-03 with the figures command's generator. Roughness is the mean absolute difference of neighbouring
# pixels; the 100 LFW training faces reach at most 0.082, the noisy cells of a broken grid 0.10-0.13.
SMALL_ETAS = (0.1, 0.2, 0.3)
ROUGHEST_TRAINING_FACE = 0.082


def small_eta_cells(seed: int = 0) -> torch.Tensor:
    from pipelines.ddim_from_noise.figures import GRID_NOISES
    from pipelines.ddim_from_noise.pipeline_ddim_from_noise import DDIMFromNoisePipeline
    from pipelines.seeds import step_noise_generator

    pipe = DDIMFromNoisePipeline.from_pretrained(str(SHIPPED), preset="course")
    pipe.set_progress_bar_config(disable=True)
    noises = load_face_noises(SHIPPED / "noise")
    grid = torch.stack([noises[name] for name in GRID_NOISES])
    images = [
        pipe(grid, eta=eta, num_inference_steps=50, generator=step_noise_generator(seed), output_type="pt").images
        for eta in SMALL_ETAS
    ]
    return torch.cat(images)


def test_small_eta_cells_of_the_eta_grid_are_clean():
    from benchmarks.gpu_suite.face_count import roughness

    assert roughness(small_eta_cells()).max() <= ROUGHEST_TRAINING_FACE


def test_small_eta_cells_of_the_eta_grid_are_faces(shared_data):
    from benchmarks.gpu_suite.face_count import count_faces
    from training.train_ddpm import load_training_images

    training = load_training_images(shared_data / "lfw_faces", 32, 1).float() / 255
    report = count_faces(small_eta_cells(), training)
    assert report["faces"] == report["total"] == 4 * len(SMALL_ETAS), report


# The old collision planted: the initial noises and the step generator from one seed, as a diffusers user passes
# them. Measured with the step noise drawn without first setting x_T's draw aside (the stream before this was
# fixed), noises 00 and 01 at eta 0.1 reach roughness 0.106 and 0.101; eta 0.1 is where it shows most.
def planted_collision_cells(etas) -> torch.Tensor:
    from pipelines.ddim_from_noise.pipeline_ddim_from_noise import DDIMFromNoisePipeline

    pipe = DDIMFromNoisePipeline.from_pretrained(str(SHIPPED), preset="course")
    pipe.set_progress_bar_config(disable=True)
    noise = torch.randn(4, 1, 32, 32, generator=torch.manual_seed(0))
    return torch.cat(
        [
            pipe(noise, eta=eta, num_inference_steps=50, generator=torch.manual_seed(0), output_type="pt").images
            for eta in etas
        ]
    )


def test_noise_and_step_generator_from_one_seed_give_clean_faces_at_small_eta():
    from benchmarks.gpu_suite.face_count import roughness

    assert roughness(planted_collision_cells([0.1])).max() <= ROUGHEST_TRAINING_FACE


@pytest.mark.slow
def test_noise_and_step_generator_from_one_seed_give_clean_faces_at_every_eta(shared_data):
    from benchmarks.gpu_suite.face_count import count_faces
    from training.train_ddpm import load_training_images

    etas = [round(0.1 * i, 1) for i in range(1, 11)]
    training = load_training_images(shared_data / "lfw_faces", 32, 1).float() / 255
    report = count_faces(planted_collision_cells(etas), training)
    assert report["faces"] == report["total"] == 4 * len(etas), report
