"""The shipped distilled student `cfg-mnistm-fast`: small, self-describing, few steps, and still right."""

import json

import torch
from diffusers import LCMScheduler

import hub_cards
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import ConditionalDDPMPipeline
from pipelines.digit_classifier import DigitClassifier

FOLDER = hub_cards.path("cfg-mnistm-fast")


def test_folder_is_small_and_records_teacher_guidance_and_steps():
    assert sum(f.stat().st_size for f in FOLDER.rglob("*") if f.is_file()) <= 16 * 2**20
    index = json.loads((FOLDER / "model_index.json").read_text())
    assert index["distilled_guidance"] == 2.0 and index["default_inference_steps"] >= 1
    summary = json.loads((FOLDER / "train_summary.json").read_text())
    teacher_weights = hub_cards.path("cfg-mnistm") / "unet" / "diffusion_pytorch_model.safetensors"
    from training.checkpoints import file_sha256

    assert summary["teacher_sha256"] == file_sha256(teacher_weights)  # distilled from the shipped teacher
    card = (FOLDER / "README.md").read_text()
    assert "## Measurements" in card and "Not measured yet" not in card


def test_default_call_takes_the_stored_steps_and_draws_the_asked_digits():
    pipe = ConditionalDDPMPipeline.from_pretrained(FOLDER)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.scheduler, LCMScheduler)
    calls = []
    pipe.unet.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    digits = list(range(10))
    out = pipe(digit=digits, num_images_per_digit=2, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert calls == [20] * pipe.config.default_inference_steps  # one forward of the batch per step
    classifier = DigitClassifier.from_pretrained(hub_cards.path("mnistm-digit-classifier"))
    correct = (classifier.predict(out.images * 2 - 1) == torch.tensor(out.labels)).sum().item()
    assert correct >= 19, correct  # 0.99+ over 1000 digits (README); 19 of these 20 leaves room for chance
