"""DDIMFromNoisePipeline against an independent float64 implementation of DDIM (Song et al. 2021, eq. 12)."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.ddim_from_noise.foreign_unet import ForeignUNetAdapter
from pipelines.ddim_from_noise.pipeline_ddim_from_noise import DDIMFromNoisePipeline, ddim_scheduler
from tests import tiny_models
from tests.test_cfg_pipeline import run_docstring_example


def tiny_unet(channels=3, size=8):
    return tiny_models.tiny_unet(channels=channels, sample_size=size).eval()


def make_pipe(preset="course", unet=None):
    pipe = DDIMFromNoisePipeline.from_unet(unet if unet is not None else tiny_unet(), preset)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---- independent reference: numpy float64, written from the paper, not from diffusers ----


def reference_alpha_bars(preset):
    dtype = np.float64 if preset == "course" else np.float32  # the diffusers preset keeps diffusers' float32 betas
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64).astype(dtype)
    return np.cumprod(1.0 - betas, dtype=dtype).astype(np.float64)


def reference_timesteps(preset, steps):
    ratio = 1000 // steps
    offset = 0 if preset == "course" else 1
    return [t * ratio + offset for t in reversed(range(steps))], ratio


def reference_step(x, eps, t, ratio, alpha_bars, eta, z, preset):
    """One DDIM update, eq. (12), in float64."""
    a_t = alpha_bars[t]
    t_prev = t - ratio
    a_prev = alpha_bars[t_prev] if t_prev >= 0 else (1.0 if preset == "course" else alpha_bars[0])
    x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
    if preset == "diffusers":
        x0 = np.clip(x0, -1, 1)
    sigma = eta * np.sqrt((1 - a_prev) / (1 - a_t)) * np.sqrt(1 - a_t / a_prev)
    return np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - sigma**2) * eps + sigma * z


def reference_sample(unet, noise, steps, eta, preset, generator=None):
    alpha_bars = reference_alpha_bars(preset)
    timesteps, ratio = reference_timesteps(preset, steps)
    x = noise.double().numpy()
    if generator is not None:
        torch.randn(noise.shape, generator=generator)  # the draw of x_T comes first, as in diffusers' DDIMPipeline
    for t in timesteps:
        with torch.no_grad():
            eps = unet(torch.from_numpy(x).float(), t).sample.double().numpy()
        z = torch.randn(noise.shape, generator=generator).double().numpy() if eta > 0 else 0.0
        x = reference_step(x, eps, t, ratio, alpha_bars, eta, z, preset)
    return x


def minmax(x):
    low = x.min(axis=(1, 2, 3), keepdims=True)
    high = x.max(axis=(1, 2, 3), keepdims=True)
    return (x - low) / (high - low)


# ---- presets ----


def test_presets_produce_the_documented_timesteps():
    course, diffusers_ = ddim_scheduler("course"), ddim_scheduler("diffusers")
    course.set_timesteps(50)
    diffusers_.set_timesteps(50)
    assert course.timesteps.tolist() == list(range(980, -1, -20))
    assert diffusers_.timesteps.tolist() == list(range(981, 0, -20))
    assert course.config.clip_sample is False and diffusers_.config.clip_sample is True
    assert float(course.final_alpha_cumprod) == 1.0
    assert float(diffusers_.final_alpha_cumprod) == pytest.approx(1 - 1e-4)


def test_course_alpha_bars_are_computed_in_float64():
    scheduler = ddim_scheduler("course")
    assert scheduler.alphas_cumprod.dtype == torch.float64
    np.testing.assert_allclose(scheduler.alphas_cumprod.numpy(), reference_alpha_bars("course"), rtol=1e-12)


def test_unknown_preset_is_an_error():
    with pytest.raises(ValueError, match="unknown preset"):
        ddim_scheduler("ddpm")


# ---- each step against eq. (12) ----


@pytest.mark.parametrize("preset", ["course", "diffusers"])
@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_every_step_matches_float64_eq12(preset, eta):
    scheduler = ddim_scheduler(preset)
    scheduler.set_timesteps(50)
    timesteps, ratio = reference_timesteps(preset, 50)
    alpha_bars = reference_alpha_bars(preset)
    generator = torch.Generator().manual_seed(1)
    for t in timesteps:
        x, eps, z = (torch.randn(2, 3, 4, 4, generator=generator) for _ in range(3))
        out = scheduler.step(eps, t, x, eta=eta, variance_noise=z if eta > 0 else None).prev_sample
        expected = reference_step(
            x.double().numpy(), eps.double().numpy(), t, ratio, alpha_bars, eta, z.double().numpy(), preset
        )
        np.testing.assert_allclose(out.double().numpy(), expected, atol=1e-5, rtol=0, err_msg=f"t = {t}")


def test_eta_one_gives_the_ddpm_posterior_variance():
    scheduler = ddim_scheduler("course")
    scheduler.set_timesteps(1000)  # consecutive steps, so x_{t-1} follows q(x_{t-1} | x_t, x_0)
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    alpha_bars = np.cumprod(1 - betas)
    x, eps = torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2)
    for t in [999, 500, 100, 1]:
        with_z = scheduler.step(eps, t, x, eta=1.0, variance_noise=torch.ones_like(x)).prev_sample
        without_z = scheduler.step(eps, t, x, eta=1.0, variance_noise=torch.zeros_like(x)).prev_sample
        sigma2 = ((with_z - without_z).double() ** 2).mean().item()
        posterior = (1 - alpha_bars[t - 1]) / (1 - alpha_bars[t]) * betas[t]  # beta tilde, DDPM eq. (7)
        assert sigma2 == pytest.approx(posterior, rel=1e-4), t


# ---- the whole pipeline ----


def test_pipeline_eta0_matches_reference_and_is_deterministic():
    pipe = make_pipe("course")
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    images = pipe(noise, eta=0.0, num_inference_steps=10, output_type="pt").images
    again = pipe(noise, eta=0.0, num_inference_steps=10, output_type="pt").images
    expected = minmax(reference_sample(pipe.unet, noise, 10, 0.0, "course"))
    np.testing.assert_allclose(images.double().numpy(), expected, atol=1e-5)
    assert torch.equal(images, again)


@pytest.mark.parametrize("preset", ["course", "diffusers"])
def test_pipeline_eta_positive_matches_reference_with_same_variance_noise(preset):
    pipe = make_pipe(preset)
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    images = pipe(noise, eta=0.5, num_inference_steps=5, generator=torch.Generator().manual_seed(7), output_type="pt")
    raw = reference_sample(pipe.unet, noise, 5, 0.5, preset, generator=torch.Generator().manual_seed(7))
    expected = minmax(raw) if preset == "course" else np.clip(raw / 2 + 0.5, 0, 1)
    np.testing.assert_allclose(images.images.double().numpy(), expected, atol=1e-5)
    other = pipe(noise, eta=0.5, num_inference_steps=5, generator=torch.Generator().manual_seed(8), output_type="pt")
    assert not torch.allclose(images.images, other.images)


def test_batched_single_and_list_inputs_agree_and_output_types():
    pipe = make_pipe()
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    batched = pipe(noise, num_inference_steps=3, output_type="np").images
    listed = pipe([noise[0], noise[1:]], num_inference_steps=3, output_type="np").images
    single = pipe(noise[1], num_inference_steps=3, output_type="np").images
    assert batched.shape == (2, 8, 8, 3) and batched.min() == 0.0 and batched.max() == 1.0
    np.testing.assert_allclose(batched, listed, atol=1e-6)
    np.testing.assert_allclose(batched[1:], single, atol=1e-5)
    pil = pipe(noise, num_inference_steps=3).images
    assert [image.mode for image in pil] == ["RGB", "RGB"] and pil[0].size == (8, 8)
    np.testing.assert_array_equal(np.asarray(pil[0]), np.floor(batched[0] * 255 + 0.5).astype(np.uint8))
    (as_tuple,) = pipe(noise, num_inference_steps=3, output_type="np", return_dict=False)
    np.testing.assert_array_equal(as_tuple, batched)


def test_latent_output_and_the_step_end_callback():
    pipe = make_pipe("diffusers")
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    latents = pipe(noise, num_inference_steps=3, output_type="latent").images
    images = pipe(noise, num_inference_steps=3, output_type="pt").images
    assert (latents < 0).any()  # x_0 in the model's range, before the preset's (x + 1) / 2
    torch.testing.assert_close((latents / 2 + 0.5).clamp(0, 1), images, rtol=0, atol=0)

    seen = []

    def record_then_zero(pipeline, step_index, timestep, callback_kwargs):
        seen.append((step_index, int(timestep), sorted(callback_kwargs)))
        if step_index == pipeline.num_timesteps - 1:
            return {"latents": torch.zeros_like(callback_kwargs["latents"])}
        return callback_kwargs

    zeroed = pipe(
        noise,
        num_inference_steps=3,
        output_type="pt",
        callback_on_step_end=record_then_zero,
        callback_on_step_end_tensor_inputs=["latents", "noise_pred"],
    ).images
    assert seen == [(i, t, ["latents", "noise_pred"]) for i, t in enumerate(pipe.scheduler.timesteps.tolist())]
    assert pipe.num_timesteps == 3
    torch.testing.assert_close(zeroed, torch.full_like(zeroed, 0.5))  # x = 0 maps to grey 0.5


def test_from_pretrained_is_diffusers_own_for_a_saved_pipeline(tmp_path):
    make_pipe("diffusers").save_pretrained(tmp_path / "saved")
    loaded = DDIMFromNoisePipeline.from_pretrained(tmp_path / "saved", dtype={"unet": torch.bfloat16})
    assert type(loaded) is DDIMFromNoisePipeline and loaded.unet.dtype == torch.bfloat16
    assert loaded.preset_name == "diffusers"  # the stored settings, whatever the dtype
    with pytest.raises(ValueError, match="variant=fp16"):
        DDIMFromNoisePipeline.from_pretrained(tmp_path / "saved", variant="fp16")
    with pytest.raises(ValueError, match="give preset or scheduler, not both"):
        DDIMFromNoisePipeline.from_pretrained(tmp_path / "saved", preset="course", scheduler=ddim_scheduler())
    # another folder's UNet takes the same keyword arguments, a dtype dict included
    tiny_unet().save_pretrained(tmp_path / "bare")
    bare = DDIMFromNoisePipeline.from_pretrained(tmp_path / "bare", dtype={"default": torch.bfloat16})
    assert bare.unet.dtype == torch.bfloat16 and bare.preset_name == "course"
    with pytest.raises(ValueError, match="is not a saved DDIMFromNoisePipeline"):
        DDIMFromNoisePipeline.from_pretrained(tmp_path / "bare", scheduler=ddim_scheduler())


def test_call_docstring_example_runs(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the example loads hub_cards/ddpm-lfw-faces
    assert run_docstring_example(DDIMFromNoisePipeline.__call__) >= 5


def test_grey_model_gives_grey_pil_images():
    pipe = make_pipe(unet=tiny_unet(channels=1))
    images = pipe(torch.randn(1, 1, 8, 8), num_inference_steps=2).images
    assert images[0].mode == "L"


def test_from_pretrained_loads_unet_and_pipeline_folders(tmp_path):
    pipe = make_pipe()
    noise = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = pipe(noise, num_inference_steps=3, output_type="np").images
    pipe.unet.save_pretrained(tmp_path / "unet_only")
    pipe.save_pretrained(tmp_path / "pipeline")
    for folder in ("unet_only", "pipeline"):
        loaded = DDIMFromNoisePipeline.from_pretrained(tmp_path / folder, preset="course")
        loaded.set_progress_bar_config(disable=True)
        np.testing.assert_allclose(loaded(noise, num_inference_steps=3, output_type="np").images, expected, atol=1e-6)
    assert (
        DDIMFromNoisePipeline.from_pretrained(tmp_path / "pipeline", preset="diffusers").config.image_normalization
        == "clamp"
    )


@pytest.mark.parametrize("preset", ["course", "diffusers"])
def test_save_load_round_trip_keeps_scheduler_normalisation_and_images(tmp_path, preset):
    # Regression: a `diffusers` pipeline came back as `course` (minmax, clip_sample=False, steps_offset=0).
    pipe = make_pipe(preset)
    pipe.save_pretrained(tmp_path)
    loaded = DDIMFromNoisePipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.preset_name == preset == pipe.preset_name
    assert loaded.config.image_normalization == pipe.config.image_normalization

    def settings(config):
        return {k: v for k, v in config.items() if not k.startswith("_")}

    assert settings(loaded.scheduler.config) == settings(pipe.scheduler.config)
    assert loaded.scheduler.alphas_cumprod.dtype == pipe.scheduler.alphas_cumprod.dtype
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = pipe(noise, eta=0.5, num_inference_steps=4, generator=torch.Generator().manual_seed(1))
    again = loaded(noise, eta=0.5, num_inference_steps=4, generator=torch.Generator().manual_seed(1))
    for before, after in zip(expected.images, again.images):
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after))


def test_an_explicit_preset_overrides_the_stored_one(tmp_path):
    make_pipe("diffusers").save_pretrained(tmp_path)
    assert DDIMFromNoisePipeline.from_pretrained(tmp_path, preset="course").preset_name == "course"


def test_a_conditional_unet_is_refused_up_front(tmp_path):
    # Regression: a T = 400 class-conditional model only warned, then failed inside the UNet.
    unet = tiny_models.tiny_unet(num_class_embeds=11)
    unet.save_pretrained(tmp_path / "model" / "unet")
    from diffusers import DDPMScheduler

    DDPMScheduler(num_train_timesteps=400).save_pretrained(tmp_path / "model" / "scheduler")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the error comes first, not the schedule warning
        with pytest.raises(ValueError, match="class-conditional UNet.*python -m pipelines.conditional_ddpm"):
            DDIMFromNoisePipeline.from_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match="needs class labels"):
        DDIMFromNoisePipeline.from_unet(unet)


def test_from_pretrained_warns_about_a_different_training_schedule(tmp_path):
    pipe = make_pipe()
    pipe.unet.save_pretrained(tmp_path / "model" / "unet")
    from diffusers import DDPMScheduler

    DDPMScheduler(num_train_timesteps=400).save_pretrained(tmp_path / "model" / "scheduler")
    with pytest.warns(UserWarning, match="training schedule"):
        DDIMFromNoisePipeline.from_pretrained(tmp_path / "model")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(tmp_path / "model" / "scheduler")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DDIMFromNoisePipeline.from_pretrained(tmp_path / "model")


def test_foreign_unet_gives_the_same_images_as_the_unet2dmodel():
    unet = tiny_unet()

    class CourseStyleUNet(torch.nn.Module):
        """forward(x, t) with one int64 timestep per image, returning the noise, like the course's UNet."""

        def __init__(self):
            super().__init__()
            self.unet = unet

        def forward(self, x, t):
            assert t.dtype == torch.int64 and t.shape == (x.shape[0],)
            return self.unet(x, t).sample

    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    native = make_pipe(unet=unet)(noise, num_inference_steps=4, output_type="np").images
    foreign = make_pipe(unet=ForeignUNetAdapter(CourseStyleUNet(), sample_size=8, in_channels=3))
    np.testing.assert_allclose(foreign(noise, num_inference_steps=4, output_type="np").images, native, atol=1e-6)


def test_foreign_unet_output_of_wrong_shape_is_an_error():
    class LearnedVariance(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 6, 1)

        def forward(self, x, t):
            return self.conv(x)

    pipe = make_pipe(unet=ForeignUNetAdapter(LearnedVariance(), sample_size=8))
    with pytest.raises(ValueError, match="noise of the input's shape"):
        pipe(torch.randn(1, 3, 8, 8), num_inference_steps=2)
    with pytest.raises(ValueError, match="torch.nn.Module"):
        ForeignUNetAdapter(lambda x, t: x, sample_size=8)


# ---- bad input ----


@pytest.mark.parametrize(
    "noise, message",
    [
        (torch.randn(1, 3, 16, 16), "has shape"),
        (torch.randn(1, 1, 8, 8), "has shape"),
        (torch.randn(3, 8), "has shape"),
        (torch.randint(0, 5, (1, 3, 8, 8)), "floating point"),
        (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
        (torch.full((1, 3, 8, 8), 1e30), "reaches 1e\\+30 in magnitude"),  # used to give a black image
        (np.zeros((1, 3, 8, 8), dtype=np.float32), "torch.Tensor"),
        ([], "empty"),
    ],
)
def test_bad_noise_is_a_clear_error(noise, message):
    with pytest.raises(ValueError, match=message):
        make_pipe()(noise, num_inference_steps=2)


def test_bad_arguments_are_clear_errors():
    pipe = make_pipe()
    noise = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="eta"):
        pipe(noise, eta=1.5)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe(noise, num_inference_steps=0)
    with pytest.raises(ValueError, match="num_inference_steps must be an int"):
        pipe(noise, num_inference_steps=2.5)
    with pytest.raises(ValueError, match="eta must be a number"):
        pipe(noise, eta=float("nan"))
    pipe.check_inputs(noise, 0.0, 2)  # public, as in diffusers pipelines
    with pytest.raises(ValueError, match="output_type must be one of 'pil', 'np', 'pt', 'latent'"):
        pipe(noise, num_inference_steps=2, output_type="latents")
    with pytest.raises(ValueError, match="generators"):
        pipe(noise, eta=0.5, num_inference_steps=2, generator=[torch.Generator()])
    with pytest.raises(ValueError, match=r"callback_on_step_end_tensor_inputs \['sample'\]"):
        pipe(noise, num_inference_steps=2, callback_on_step_end=dict, callback_on_step_end_tensor_inputs=["sample"])


# ---- the generator's stream: diffusers' DDIMPipeline side by side ----

# diffusers' tests/pipelines/ddim/test_ddim.py compares DDIMPipeline's images with this tolerance; both pipelines run
# the same operations in the same order, so on one CPU the images agree to the last bit (max difference 0.0 here).
DIFFUSERS_DDIM_TOLERANCE = 1e-3


def diffusers_and_ours(unet):
    from diffusers import DDIMPipeline, DDIMScheduler

    reference = DDIMPipeline(unet, DDIMScheduler())
    # DDIMPipeline maps x_0 to (x + 1) / 2, clamped: the "clamp" normalisation
    ours = DDIMFromNoisePipeline(unet, DDIMScheduler(), image_normalization="clamp")
    for pipe in (reference, ours):
        pipe.set_progress_bar_config(disable=True)
    return reference, ours


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_noise_and_generator_from_one_seed_give_diffusers_ddim_pipeline_images(eta):
    """The initial noise drawn from seed s and the generator seeded s: DDIMPipeline(generator=seed s)'s images."""
    reference, ours = diffusers_and_ours(tiny_unet())
    expected = reference(generator=torch.manual_seed(3), eta=eta, num_inference_steps=4, output_type="np").images
    noise = torch.randn(1, 3, 8, 8, generator=torch.manual_seed(3))
    images = ours(noise, generator=torch.manual_seed(3), eta=eta, num_inference_steps=4, output_type="np").images
    assert np.abs(images - expected).max() <= DIFFUSERS_DDIM_TOLERANCE
    if eta > 0:  # the step noise matters: another step generator changes the images
        other = ours(noise, generator=torch.manual_seed(4), eta=eta, num_inference_steps=4, output_type="np").images
        assert np.abs(other - expected).max() > 10 * DIFFUSERS_DDIM_TOLERANCE


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_per_image_generators_give_diffusers_ddim_pipeline_images(eta):
    """One generator per image: randn_tensor draws image i from generator i, x_T and then every step's noise."""
    reference, ours = diffusers_and_ours(tiny_unet())

    def generators():
        return [torch.Generator().manual_seed(seed) for seed in (5, 6, 7)]

    expected = reference(batch_size=3, generator=generators(), eta=eta, num_inference_steps=3, output_type="np")
    noise = [torch.randn(3, 8, 8, generator=g) for g in generators()]  # the same seeds again, one image each
    images = ours(noise, generator=generators(), eta=eta, num_inference_steps=3, output_type="np").images
    assert np.abs(images - expected.images).max() <= DIFFUSERS_DDIM_TOLERANCE
    # image 1 alone, with its own generator, is image 1 of the batch
    alone = ours(noise[1], generator=[generators()[1]], eta=eta, num_inference_steps=3, output_type="np").images
    assert np.abs(alone[0] - images[1]).max() <= DIFFUSERS_DDIM_TOLERANCE


def test_a_given_noise_consumes_the_generator_as_drawing_it_would():
    """After the call, the generator stands where DDIMPipeline's would: x_T's draw and, at eta > 0, every step's."""
    reference, ours = diffusers_and_ours(tiny_unet())
    noise = torch.randn(2, 3, 8, 8, generator=torch.manual_seed(0))
    for eta in (0.0, 0.7):
        theirs, mine = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        reference(batch_size=2, generator=theirs, eta=eta, num_inference_steps=3, output_type="np")
        ours(noise, generator=mine, eta=eta, num_inference_steps=3, output_type="np")
        assert torch.equal(theirs.get_state(), mine.get_state())
    # without a generator nothing is drawn: the global generator is untouched
    torch.manual_seed(2)
    ours(noise, eta=0.0, num_inference_steps=2, output_type="np")
    assert torch.equal(torch.get_rng_state(), torch.manual_seed(2).get_state())


def test_a_seeded_step_generator_is_deterministic():
    from pipelines.seeds import step_noise_generator

    pipe = make_pipe()
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    first = pipe(noise, eta=0.3, num_inference_steps=4, generator=step_noise_generator(0), output_type="pt")
    again = pipe(noise, eta=0.3, num_inference_steps=4, generator=step_noise_generator(0), output_type="pt")
    assert torch.equal(first.images, again.images)
