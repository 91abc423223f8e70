"""ConditionalDDPMPipeline and its course-output CLI on tiny, randomly initialised components (CPU)."""

import doctest
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
)

from pipelines import ConditionalDDPMPipeline
from pipelines.conditional_ddpm import course_output as cli
from tests.tiny_models import tiny_unet

TRAIN_STEPS = 20
REPO_ROOT = Path(__file__).resolve().parents[1]


def run_docstring_example(function) -> int:
    """Runs the ```py block of `function`'s Examples section as a doctest; returns how many statements ran."""
    text = function.__doc__
    start = text.index("```py", text.index("Examples:")) + len("```py")
    example = text[start : text.index("```", start)]
    test = doctest.DocTestParser().get_doctest(example, {}, function.__qualname__, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0, f"{runner.failures} failing statements in the example of {function.__qualname__}"
    return runner.tries


def get_dummy_components(sample_size=8):
    unet = tiny_unet(num_class_embeds=11, attention=True, sample_size=sample_size).eval()
    return {"unet": unet, "scheduler": DDPMScheduler(num_train_timesteps=TRAIN_STEPS), "null_class_id": 10}


@pytest.fixture
def pipe():
    pipe = ConditionalDDPMPipeline(**get_dummy_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample(pipe, seed=0, **kwargs):
    kwargs = {"digit": [1, 7], "guidance": 2.0, "num_images_per_digit": 2, "output_type": "pt", **kwargs}
    return pipe(generator=torch.Generator().manual_seed(seed), **kwargs)


def test_guidance_mix_matches_hand_computation(pipe):
    w, steps = 2.0, 3
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    images = sample(pipe, digit=[3], num_images_per_digit=2, num_inference_steps=steps).images

    # The report's mix, written out: eps = (1 + w) eps(x, c) - w eps(x, null), one DDIM step at a time.
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(steps)
    x = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    digit, null = torch.tensor([3, 3]), torch.tensor([10, 10])
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps_c = pipe.unet(x, t, class_labels=digit).sample
            eps_null = pipe.unet(x, t, class_labels=null).sample
            eps = (1 + w) * eps_c - w * eps_null
            # diffusers' form with guidance_scale s = 1 + w is the same number
            torch.testing.assert_close(eps, eps_null + (1 + w) * (eps_c - eps_null), rtol=1e-5, atol=1e-5)
            x = scheduler.step(eps, t, x).prev_sample
    torch.testing.assert_close(images, (x / 2 + 0.5).clamp(0, 1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("guidance, batch_factor", [(0.0, 1), (1.5, 2)])
def test_one_forward_per_step_and_batching(pipe, guidance, batch_factor):
    batches = []
    hook = pipe.unet.register_forward_hook(lambda module, inputs, output: batches.append(inputs[0].shape[0]))
    sample(pipe, guidance=guidance, num_inference_steps=4)
    hook.remove()
    assert batches == [4 * batch_factor] * 4  # 4 images; guidance > 0 batches cond + null in one forward


def test_guidance_scale_is_one_plus_w(pipe):
    """diffusers' guidance_scale s and the report's w are two spellings of one mix: s = 1 + w."""
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    for w in (0.0, 1.5):
        by_w = sample(pipe, guidance=w, num_inference_steps=3).images
        by_scale = sample(pipe, guidance=None, guidance_scale=1 + w, num_inference_steps=3).images
        torch.testing.assert_close(by_scale, by_w, rtol=0, atol=0)
        assert pipe.guidance_scale == 1 + w and pipe.do_classifier_free_guidance == (w > 0)
    default = sample(pipe, guidance=None, num_inference_steps=3).images
    torch.testing.assert_close(default, sample(pipe, guidance=2.0, num_inference_steps=3).images, rtol=0, atol=0)
    assert pipe.guidance_scale == 3.0  # neither given: w = 2


def test_a_step_end_callback_can_change_the_guidance(pipe):
    """As in diffusers: `pipe._guidance_scale` set in a callback applies from the next step (here: unguided)."""
    batches = []
    hook = pipe.unet.register_forward_hook(lambda module, inputs, output: batches.append(inputs[0].shape[0]))

    def stop_guiding(pipeline, step_index, timestep, callback_kwargs):
        pipeline._guidance_scale = 1.0
        return callback_kwargs

    sample(pipe, guidance_scale=3.0, guidance=None, num_inference_steps=4, callback_on_step_end=stop_guiding)
    hook.remove()
    assert batches == [8, 4, 4, 4] and pipe.guidance_scale == 1.0


def test_latent_output_is_x0_before_the_image_mapping(pipe):
    latent = sample(pipe, num_inference_steps=3, output_type="latent", capture_timesteps=[0])
    images = sample(pipe, num_inference_steps=3, output_type="pt").images
    assert latent.images.shape == (4, 3, 8, 8) and (latent.images < 0).any()  # the model range, not [0, 1]
    torch.testing.assert_close((latent.images / 2 + 0.5).clamp(0, 1), images, rtol=0, atol=0)
    torch.testing.assert_close(latent.intermediates[0], latent.images)


def test_one_generator_per_image_gives_each_image_its_own_stream(pipe):
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    batch = pipe(
        digit=[1, 7],
        num_inference_steps=2,
        output_type="pt",
        generator=[torch.Generator().manual_seed(seed) for seed in (10, 11)],
    ).images
    for index, (digit, seed) in enumerate(((1, 10), (7, 11))):
        generator = torch.Generator().manual_seed(seed)
        alone = pipe(digit=digit, num_inference_steps=2, output_type="pt", generator=generator).images
        torch.testing.assert_close(batch[index], alone[0], rtol=1e-4, atol=1e-5)


def test_guidance_changes_the_images(pipe):
    plain = sample(pipe, guidance=0.0, num_inference_steps=3).images
    guided = sample(pipe, guidance=2.0, num_inference_steps=3).images
    assert not torch.allclose(plain, guided)


def test_same_seed_same_images(pipe):
    first = sample(pipe, seed=5, num_inference_steps=4).images
    again = sample(pipe, seed=5, num_inference_steps=4).images
    other = sample(pipe, seed=6, num_inference_steps=4).images
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, other)


def test_output_types_labels_and_order(pipe):
    out = sample(pipe, digit=[4, 2], num_images_per_digit=3, num_inference_steps=2, output_type="np")
    assert out.labels == [4, 4, 4, 2, 2, 2]
    assert out.images.shape == (6, 8, 8, 3) and 0 <= out.images.min() and out.images.max() <= 1
    pt = sample(pipe, digit=[4, 2], num_images_per_digit=3, num_inference_steps=2, output_type="pt").images
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), out.images, atol=1e-6)
    pil = sample(pipe, digit=5, num_inference_steps=2, num_images_per_digit=2, output_type="pil").images
    assert len(pil) == 2 and all(isinstance(i, PIL.Image.Image) and i.size == (8, 8) for i in pil)
    images, labels, intermediates = sample(pipe, digit=5, num_inference_steps=2, return_dict=False)
    assert images.shape == (2, 3, 8, 8) and labels == [5, 5] and intermediates == {}


def test_capture_timesteps_convention(pipe):
    out = sample(pipe, num_inference_steps=None, capture_timesteps=[TRAIN_STEPS, 11, 1, 0])
    assert sorted(out.intermediates) == [0, 1, 11, TRAIN_STEPS]
    noise = torch.randn((4, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.intermediates[TRAIN_STEPS], (noise / 2 + 0.5).clamp(0, 1))  # t = T: noise
    torch.testing.assert_close(out.intermediates[0], out.images)  # t = 0: the output
    assert not torch.allclose(out.intermediates[1], out.images)  # t = 1: input of the last step


def test_ddim_scheduler_swap_and_its_capture_points(pipe):
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    out = sample(pipe, num_inference_steps=5, capture_timesteps=[1, 17])
    assert out.images.shape == (4, 3, 8, 8) and sorted(out.intermediates) == [1, 17]
    message = r"\[2\] are not visited with 5 inference steps of DDIMScheduler \(leading spacing\); the visited t are "
    with pytest.raises(ValueError, match=message + "0, 1, 5, 9, 13, 17 "):
        sample(pipe, num_inference_steps=5, capture_timesteps=[2])


@pytest.mark.parametrize("scheduler_class", [DPMSolverMultistepScheduler, EulerDiscreteScheduler])
def test_other_diffusers_schedulers(pipe, scheduler_class):
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    first = sample(pipe, num_inference_steps=3).images
    assert first.shape == (4, 3, 8, 8) and torch.isfinite(first).all()
    torch.testing.assert_close(sample(pipe, num_inference_steps=3).images, first)


def test_save_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    # the folder carries the pipeline's code, named as [module, class], for trust_remote_code loading
    assert index["_class_name"] == ["pipeline_conditional_ddpm", "ConditionalDDPMPipeline"]
    assert index["null_class_id"] == 10 and (tmp_path / "pipeline_conditional_ddpm.py").is_file()
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = ConditionalDDPMPipeline.from_pretrained(tmp_path)  # the installed class, no trust_remote_code
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded) is ConditionalDDPMPipeline
    assert loaded.unet.config.num_class_embeds == 11 and loaded.config.null_class_id == 10
    torch.testing.assert_close(sample(loaded, num_inference_steps=3).images, sample(pipe, num_inference_steps=3).images)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"digit": 10}, "digit must be an int in 0-9"),
        ({"digit": [3, -1]}, "digit must be an int in 0-9"),
        ({"digit": "3"}, "digit must be an int in 0-9"),
        ({"digit": []}, "empty"),
        ({"digit": 3.5}, "digit must be an int in 0-9, got 3.5"),
        ({"digit": True}, "digit must be an int in 0-9"),
        ({"guidance": -0.5}, "guidance w must be >= 0"),
        ({"guidance": float("nan")}, "guidance must be a finite number"),
        ({"guidance": float("inf")}, "guidance must be a finite number"),
        ({"num_images_per_digit": 0}, "num_images_per_digit must be an int >= 1"),
        ({"num_images_per_digit": 2.5}, "num_images_per_digit must be an int >= 1, got 2.5"),
        ({"num_inference_steps": 0}, "num_inference_steps must be an int between 1 and"),
        ({"num_inference_steps": 2.0}, "num_inference_steps must be an int"),
        ({"num_inference_steps": TRAIN_STEPS + 1}, "steps the model was trained with"),
        ({"guidance": 1.0, "guidance_scale": 2.0}, r"give guidance \(w, got 1.0\) or guidance_scale .* not both"),
        ({"guidance": None, "guidance_scale": 0.5}, "guidance_scale must be a finite number >= 1"),
        ({"guidance": None, "guidance_scale": float("nan")}, "guidance_scale must be a finite number >= 1"),
        ({"guidance": None, "guidance_scale": True}, "guidance_scale must be a finite number >= 1"),
        ({"callback_on_step_end_tensor_inputs": ["sample"]}, "callback_on_step_end_tensor_inputs"),
        ({"output_type": "latents"}, "output_type must be one of 'pil', 'np', 'pt', 'latent'"),
        ({"capture_timesteps": [TRAIN_STEPS + 1]}, "not visited"),
        ({"latents": torch.randn(3, 3, 8, 8)}, r"latents must be a tensor of shape \(4, 3, 8, 8\)"),
        ({"latents": torch.randn(4, 1, 8, 8)}, r"latents must be a tensor of shape \(4, 3, 8, 8\)"),
        ({"latents": np.zeros((4, 3, 8, 8))}, "got ndarray"),
        ({"latents": torch.full((4, 3, 8, 8), float("nan"))}, "finite"),
        ({"class_labels": [1, 7]}, r"give digit \(got \[1, 7\]\) or class_labels \(diffusers' name .* not both"),
        ({"digit": None, "class_labels": [1, 10]}, "class_labels must be an int in 0-9, got 10"),
        ({"digit": None, "class_labels": []}, "class_labels is an empty list"),
        ({"digit": None, "class_labels": "three"}, r"got the name 'three': pipe.get_label_ids\(\['three'\]\)"),
    ],
)
def test_bad_inputs_raise(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample(pipe, **kwargs)


def test_bad_inputs_fail_before_any_unet_forward(pipe):
    # Regression: num_inference_steps=0 used to fall back to all steps through `or`; nan ran unguided.
    calls = []
    hook = pipe.unet.register_forward_hook(lambda *args: calls.append(1))
    for kwargs in ({"num_inference_steps": 0}, {"guidance": float("nan")}, {"digit": 3.5}):
        with pytest.raises(ValueError):
            sample(pipe, **kwargs)
    hook.remove()
    assert calls == []


def test_check_inputs_is_public_and_accepts_numpy_integers(pipe):
    pipe.check_inputs(np.int64(3), 0.5, np.int32(2), None)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe.check_inputs(3, 0.5, 2, 0)
    with pytest.raises(ValueError, match="got 3 generators for 2 images"):
        pipe.check_inputs(3, 0.5, 2, None, generator=[torch.Generator()] * 3)


def test_callback_on_step_end_sees_every_step_and_can_edit_the_sample(pipe):
    seen = []

    def record(pipeline, step_index, timestep, callback_kwargs):
        seen.append((step_index, int(timestep), tuple(callback_kwargs)))
        return {}

    sample(pipe, num_inference_steps=4, callback_on_step_end=record, callback_on_step_end_tensor_inputs=["latents"])
    assert [s[0] for s in seen] == [0, 1, 2, 3] and all(s[2] == ("latents",) for s in seen)
    assert [s[1] for s in seen] == pipe.scheduler.timesteps.tolist() and pipe.num_timesteps == 4

    def zero_at_the_end(pipeline, step_index, timestep, callback_kwargs):
        return {"latents": torch.zeros_like(callback_kwargs["latents"])} if step_index == 3 else callback_kwargs

    out = sample(pipe, num_inference_steps=4, callback_on_step_end=zero_at_the_end, capture_timesteps=[0])
    torch.testing.assert_close(out.images, torch.full_like(out.images, 0.5))  # x = 0 maps to grey 0.5
    torch.testing.assert_close(out.intermediates[0], out.images)  # capture runs on the edited sample


def test_capture_timesteps_equals_what_a_step_end_callback_records(pipe):
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    recorded = {}

    def record(pipeline, step_index, timestep, callback_kwargs):
        recorded[step_index] = (callback_kwargs["latents"] / 2 + 0.5).clamp(0, 1)
        return callback_kwargs

    out = sample(pipe, num_inference_steps=5, capture_timesteps=[13, 1, 0], callback_on_step_end=record)
    timesteps = pipe.scheduler.timesteps.tolist()  # [16, 12, 8, 4, 0]: report t = timestep + 1
    torch.testing.assert_close(out.intermediates[13], recorded[timesteps.index(12) - 1])
    torch.testing.assert_close(out.intermediates[1], recorded[timesteps.index(0) - 1])
    torch.testing.assert_close(out.intermediates[0], recorded[len(timesteps) - 1])


def test_latents_are_the_starting_noise(pipe):
    """Given latents replace the draw from the generator: the same x_T gives the same images either way."""
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # no step noise: only x_T matters
    drawn = sample(pipe, seed=5, num_inference_steps=3).images
    noise = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    given = [sample(pipe, seed=seed, latents=noise, num_inference_steps=3).images for seed in (1, 2)]
    torch.testing.assert_close(given[0], drawn, rtol=0, atol=0)
    torch.testing.assert_close(given[1], drawn, rtol=0, atol=0)
    other = sample(pipe, seed=5, latents=torch.randn(4, 3, 8, 8), num_inference_steps=3).images
    assert not torch.equal(other, drawn)


def test_from_pretrained_is_diffusers_own_with_the_stored_null_class(tmp_path):
    components = get_dummy_components()
    ConditionalDDPMPipeline(components["unet"], components["scheduler"], null_class_id=3).save_pretrained(tmp_path)
    loaded = ConditionalDDPMPipeline.from_pretrained(tmp_path, dtype={"unet": torch.bfloat16}, use_safetensors=True)
    assert loaded.config.null_class_id == 3 and loaded.unet.dtype == torch.bfloat16
    assert ConditionalDDPMPipeline.from_pretrained(tmp_path, null_class_id=5).config.null_class_id == 5
    with pytest.raises(ValueError, match="variant=fp16"):
        ConditionalDDPMPipeline.from_pretrained(tmp_path, variant="fp16")


def test_call_docstring_example_runs(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # the example loads hub_cards/cfg-mnistm-small
    assert run_docstring_example(ConditionalDDPMPipeline.__call__) >= 4


def test_null_class_must_exist_in_the_unet():
    components = get_dummy_components()
    with pytest.raises(ValueError, match="null_class_id=11"):
        ConditionalDDPMPipeline(components["unet"], components["scheduler"], null_class_id=11)


def test_course_output_command(tmp_path):
    ConditionalDDPMPipeline(**get_dummy_components(sample_size=28)).save_pretrained(tmp_path / "model")
    argv = [
        "--pretrained",
        str(tmp_path / "model"),
        "--output_dir",
        str(tmp_path / "out"),
        "--images_per_digit",
        "2",
        "--num_inference_steps",
        "2",
        "--batch_size",
        "7",
        "--scheduler",
        "ddim",
    ]
    cli.main(cli.parse_args(argv))
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == sorted([*(f"{d}_{i:03d}.png" for d in range(10) for i in (1, 2))])
    image = PIL.Image.open(tmp_path / "out" / "7_002.png")
    assert image.size == (28, 28) and image.mode == "RGB"
    # With a deterministic sampler a file depends only on (seed, digit, index): --digits can shard the work and
    # --batch_size change without changing the images (up to float rounding of batched convolutions).
    again = [*argv[:3], str(tmp_path / "again"), *argv[4:-4], "--batch_size", "1", "--scheduler", "ddim"]
    cli.main(cli.parse_args([*again, "--digits", "3"]))
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["3_001.png", "3_002.png"]
    for name in ("3_001.png", "3_002.png"):
        first, second = (
            np.asarray(PIL.Image.open(folder / name), dtype=int) for folder in (tmp_path / "out", tmp_path / "again")
        )
        assert np.abs(first - second).max() <= 1, name
    # and different indices get different noise
    assert not np.array_equal(
        np.asarray(PIL.Image.open(tmp_path / "out" / "3_001.png")),
        np.asarray(PIL.Image.open(tmp_path / "out" / "3_002.png")),
    )


def test_course_output_starting_noise_is_per_image():
    noise = cli.starting_noise([(3, 1), (7, 2), (3, 1)], seed=0, shape=(3, 4, 4))
    torch.testing.assert_close(noise[0], noise[2], rtol=0, atol=0)
    assert not torch.equal(noise[0], noise[1])
    assert cli.image_seed(0, 9, 1) != cli.image_seed(1, 0, 1) and cli.image_seed(0, 3, 2) != cli.image_seed(0, 3, 1)


def test_course_output_command_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="--pretrained folder .*missing does not exist"):
        cli.parse_args(["--pretrained", str(tmp_path / "missing"), "--output_dir", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="not a pipeline folder"):
        cli.parse_args(["--pretrained", str(tmp_path), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(ValueError, match="--digits must be in 0-9"):
        cli.parse_args(["--pretrained", str(tmp_path), "--output_dir", str(tmp_path), "--digits", "10"])
    with pytest.raises(ValueError, match="images_per_digit"):
        cli.parse_args(["--pretrained", str(tmp_path), "--output_dir", str(tmp_path), "--images_per_digit", "0"])


# ---- diffusers' class-label vocabulary (DiTPipeline's) ----


def test_class_labels_is_digit_under_diffusers_name(pipe):
    by_digit = sample(pipe, num_inference_steps=3)
    by_class_labels = sample(pipe, digit=None, class_labels=[1, 7], num_inference_steps=3)
    assert torch.equal(by_class_labels.images, by_digit.images) and by_class_labels.labels == [1, 1, 7, 7]
    # DiT's reshape(-1): nested lists (what diffusers' battery batches) are read in order
    nested = sample(pipe, digit=None, class_labels=[[1], [7]], num_inference_steps=3)
    assert torch.equal(nested.images, by_digit.images)
    # neither given: digit 0, as before
    assert pipe(num_inference_steps=2, output_type="np").labels == [0]


def test_labels_and_get_label_ids_as_dit_has_them(pipe):
    assert pipe.labels["three"] == pipe.labels["3"] == 3 and len(pipe.labels) == 20
    assert list(pipe.labels) == sorted(pipe.labels)
    assert pipe.get_label_ids(["three", "7"]) == [3, 7]
    assert pipe.get_label_ids("three") == [3]  # one name, not the characters t, h, r, e, e
    assert pipe.get_label_ids("7") == [7]
    for bad in (["three", "eleven"], ["thirteen"], [3]):
        with pytest.raises(ValueError, match=r"is not a name of this pipeline's classes; choose from: 0, 1, "):
            pipe.get_label_ids(bad)


def test_id2label_is_stored_with_the_folder(tmp_path):
    components = get_dummy_components()
    names = {str(d): f"digit {d}, {'even' if d % 2 == 0 else 'odd'} {d}" for d in range(10)}
    ConditionalDDPMPipeline(**components, id2label=names).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["id2label"] == names
    loaded = ConditionalDDPMPipeline.from_pretrained(tmp_path)
    assert loaded.config.id2label == names and loaded.get_label_ids(["odd 3", "digit 8"]) == [3, 8]
    # int keys (a Python dict) are stored as JSON keeps them, so a saved and a loaded pipeline agree
    by_int = ConditionalDDPMPipeline(**components, id2label={int(k): v for k, v in names.items()})
    assert by_int.config.id2label == names
    for shipped in ("cfg-mnistm", "cfg-mnistm-small", "cfg-mnistm-fast"):
        index = json.loads((REPO_ROOT / "hub_cards" / shipped / "model_index.json").read_text())
        assert index["id2label"]["3"] == "3, three", shipped


@pytest.mark.parametrize(
    "id2label, message",
    [
        ({str(d): str(d) for d in range(9)}, "id2label must name each class id 0-9 once"),
        ({**{str(d): str(d) for d in range(10)}, "10": "null"}, "id2label must name each class id 0-9 once"),
        ({**{str(d): str(d) for d in range(10)}, 3: "three"}, "id2label must name each class id 0-9 once"),
        ({**{str(d): str(d) for d in range(10)}, "4": "4, 3"}, "id2label names both class 3 and class 4 '3'"),
        ({**{str(d): str(d) for d in range(10)}, "x": "x"}, "id2label's keys must be class ids 0-9, got 'x'"),
        ({**{str(d): str(d) for d in range(10)}, "5": "five,"}, r"id2label\['5'\] must be comma-separated non-empty"),
        ([str(d) for d in range(10)], "id2label must be a dict"),
    ],
)
def test_bad_id2label_is_a_clear_error(id2label, message):
    with pytest.raises(ValueError, match=message):
        ConditionalDDPMPipeline(**get_dummy_components(), id2label=id2label)
