"""The shipped conditional DDPMs: they load, their cards describe them, and they draw recognisable digits fast."""

import json
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from huggingface_hub import ModelCard

import hub_cards
from pipelines import ConditionalDDPMPipeline, DigitClassifier, make_scheduler
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import default_inference_steps
from training.diffusion import cards

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["cfg-mnistm", "cfg-mnistm-small"]
MAX_WEIGHT_BYTES = 16 * 10**6  # the limit per folder


@pytest.fixture(scope="module")
def classifier():
    return DigitClassifier.from_pretrained(hub_cards.path("mnistm-digit-classifier")).eval()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_folder_loads_and_matches_its_card(name):
    folder = hub_cards.path(name)
    pipe = ConditionalDDPMPipeline.from_pretrained(folder)
    training_args = json.loads((folder / "training_args.json").read_text())
    summary = json.loads((folder / "train_summary.json").read_text())
    unet = pipe.unet.config
    assert list(unet.block_out_channels) == training_args["block_out_channels"]
    assert unet.layers_per_block == training_args["layers_per_block"]
    assert unet.norm_num_groups == training_args["norm_num_groups"]
    assert unet.num_class_embeds == 11 and pipe.config.null_class_id == 10
    assert pipe.scheduler.config.num_train_timesteps == training_args["num_train_timesteps"] == 400
    assert sum(p.numel() for p in pipe.unet.parameters()) == summary["num_params"]
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size <= MAX_WEIGHT_BYTES

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "diffusers" and card.data.datasets == ["Mike0307/MNIST-M"]
    assert f"{summary['num_params'] / 1e6:.2f}M parameters" in card.text
    assert f"block_out_channels {tuple(training_args['block_out_channels'])}" in card.text
    assert f"--learning_rate {training_args['learning_rate']}" in card.text
    # The card is exactly what the card builder makes from the folder's records and the committed measurements.
    bench = json.loads((ROOT / "docs" / "benchmarks" / "samplers_cpu.json").read_text())
    rebuilt = cards.conditional_ddpm_card(
        folder, bench["results"], bench["device"], repo=f"hub_cards/{name}", fast_steps=card_fast_steps(card)
    )
    assert str(rebuilt) == str(card)
    measured = [r for r in bench["results"] if Path(r["model"]).name == name]
    assert [round(r["accuracy"], 4) for r in measured] == [e.metric_value for e in card.data.eval_results]
    assert any(r["scheduler"] == "dpm" and r["accuracy"] >= 0.99 for r in measured)


def card_fast_steps(card: ModelCard) -> int:
    marker = "--scheduler dpm --num_inference_steps "
    return int(card.text.split(marker)[1].split()[0])


@pytest.mark.parametrize("name", SHIPPED)
def test_default_call_draws_recognisable_digits_with_the_fast_sampler(name, classifier):
    """`pipe(digit=..., guidance=2.0)` as loaded: the folder's DPM-Solver++ with its default 10 steps.

    20 images, 2 of each digit: a broken or untrained model gets about 2 of 20 right.
    """
    pipe = ConditionalDDPMPipeline.from_pretrained(hub_cards.path(name))
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    steps = []
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        digit=list(range(10)),
        guidance=2.0,
        num_images_per_digit=2,
        generator=torch.Generator().manual_seed(1),
        callback_on_step_end=lambda pipe, i, t, kwargs: steps.append(int(t)) or {},
    )
    assert len(steps) == 10 and steps[0] == 399
    predictions = classifier.predict(classifier.images_to_tensor(out.images))
    correct = int((predictions == torch.tensor(out.labels)).sum())
    assert correct >= 17, f"{name}: only {correct} of 20 digits recognised"


@pytest.mark.parametrize("sampler", ["dpm", "unipc"])
def test_multistep_samplers_run_with_a_generator_and_are_deterministic(sampler):
    """Multistep solvers' step() takes no generator: the pipeline must not pass one (a TypeError otherwise)."""
    pipe = ConditionalDDPMPipeline.from_pretrained(hub_cards.path("cfg-mnistm-small"))
    pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    runs = [
        pipe(digit=7, num_inference_steps=4, output_type="np", generator=torch.Generator().manual_seed(3)).images
        for _ in range(2)
    ]
    assert runs[0].shape == (1, 28, 28, 3)
    assert (runs[0] == runs[1]).all()
    assert pipe.scheduler.timesteps[0] == 399  # trailing spacing starts at pure noise


def test_course_samplers_keep_their_timesteps_whatever_the_folder_stores():
    """The shipped folders store DPM-Solver++ (trailing); DDPM and DDIM built from it keep the course's leading
    timesteps, the same as from the training DDPMScheduler, and `None` steps mean all 400 for DDPM."""
    pipe = ConditionalDDPMPipeline.from_pretrained(hub_cards.path("cfg-mnistm-small"))
    trained = DDPMScheduler(num_train_timesteps=400)
    for name, scheduler_class, steps in (("ddim", DDIMScheduler, 50), ("ddpm", DDPMScheduler, 400)):
        from_folder = make_scheduler(name, pipe.scheduler.config)
        from_training = scheduler_class.from_config(trained.config)
        assert isinstance(from_folder, scheduler_class)
        assert default_inference_steps(from_folder) == steps
        from_folder.set_timesteps(steps)
        from_training.set_timesteps(steps)
        assert from_folder.timesteps.tolist() == from_training.timesteps.tolist()
        torch.testing.assert_close(from_folder.alphas_cumprod, from_training.alphas_cumprod, rtol=0, atol=0)
    assert default_inference_steps(pipe.scheduler) == 10
