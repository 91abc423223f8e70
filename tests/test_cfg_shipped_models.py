"""The shipped conditional DDPMs: they load, their cards describe them, and they draw recognisable digits fast."""

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from pipelines import ConditionalDDPMPipeline, DigitClassifier, make_scheduler
from training import cfg_card

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["cfg-mnistm", "cfg-mnistm-small"]
MAX_WEIGHT_BYTES = 16 * 10**6  # the limit per folder


@pytest.fixture(scope="module")
def classifier():
    return DigitClassifier.from_pretrained(ROOT / "hub_cards" / "mnistm-digit-classifier").eval()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_folder_loads_and_matches_its_card(name):
    folder = ROOT / "hub_cards" / name
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
    rebuilt = cfg_card.build_card(folder, bench["results"], bench["device"], repo=f"hub_cards/{name}",
                                  fast_steps=card_fast_steps(card))
    assert str(rebuilt) == str(card)
    measured = [r for r in bench["results"] if Path(r["model"]).name == name]
    assert [round(r["accuracy"], 4) for r in measured] == [e.metric_value for e in card.data.eval_results]
    assert any(r["scheduler"] == "dpm" and r["accuracy"] >= 0.99 for r in measured)


def card_fast_steps(card: ModelCard) -> int:
    marker = "--scheduler dpm --num_inference_steps "
    return int(card.text.split(marker)[1].split()[0])


@pytest.mark.parametrize("name", SHIPPED)
def test_fast_sampler_draws_recognisable_digits(name, classifier):
    """20 images, 2 of each digit, DPM-Solver 10 steps: a broken or untrained model gets about 2 of 20 right."""
    pipe = ConditionalDDPMPipeline.from_pretrained(ROOT / "hub_cards" / name)
    pipe.scheduler = make_scheduler("dpm", pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(digit=list(range(10)), guidance=2.0, num_images_per_digit=2, num_inference_steps=10,
               generator=torch.Generator().manual_seed(1))
    predictions = classifier.predict(classifier.images_to_tensor(out.images))
    correct = int((predictions == torch.tensor(out.labels)).sum())
    assert correct >= 17, f"{name}: only {correct} of 20 digits recognised"


@pytest.mark.parametrize("sampler", ["dpm", "unipc"])
def test_multistep_samplers_run_with_a_generator_and_are_deterministic(sampler):
    """Multistep solvers' step() takes no generator: the pipeline must not pass one (it used to raise)."""
    pipe = ConditionalDDPMPipeline.from_pretrained(ROOT / "hub_cards" / "cfg-mnistm-small")
    pipe.scheduler = make_scheduler(sampler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    runs = [pipe(digit=7, num_inference_steps=4, output_type="np", generator=torch.Generator().manual_seed(3)).images
            for _ in range(2)]
    assert runs[0].shape == (1, 28, 28, 3)
    assert (runs[0] == runs[1]).all()
    assert pipe.scheduler.timesteps[0] == 399  # trailing spacing starts at pure noise
