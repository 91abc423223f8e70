"""Every model of the web demo, loaded once when the server starts.

The folders are found through `hub_cards.path`, the lookup the commands and tests use, so the demo runs the
same weights wherever the package or the repository (a Hugging Face Space) lives. A request never changes a
loaded model: it builds its own pipeline around the shared weights, with its own scheduler, because schedulers
keep state (`set_timesteps`) that two requests must not share.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDIMScheduler

import hub_cards
from adapters.faces import load_face_noises
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import ConditionalDDPMPipeline
from pipelines.conditional_ddpm.schedulers import make_scheduler
from pipelines.dann.modeling_dann import DANNModel
from pipelines.ddim_from_noise.pipeline_ddim_from_noise import DDIMFromNoisePipeline
from pipelines.digit_classifier.modeling_digit_classifier import DigitClassifier

# The first is the page's default: about 3x cheaper a step than cfg-mnistm on a CPU, as accurate with DPM-Solver.
DIGIT_MODELS = ("cfg-mnistm-small", "cfg-mnistm")
CLASSIFIER = "mnistm-digit-classifier"
FACES = "ddpm-lfw-faces"
ADAPTED = "dann-mnistm-usps"


@dataclass
class ShippedDANN:
    """A DANN folder of hub_cards and what its metrics.json says it is."""

    folder: Path
    source: str
    target: str
    mode: str


@dataclass
class DemoModels:
    digit_pipelines: dict[str, ConditionalDDPMPipeline]  # templates: requests share their UNets, not schedulers
    classifier: DigitClassifier
    faces: DDIMFromNoisePipeline  # template, as above
    face_noises: dict[str, torch.Tensor]  # the course-format noises shipped beside the face model
    adapted: DANNModel
    adapted_card: ShippedDANN
    source_only: DANNModel | None
    source_only_card: ShippedDANN | None

    def digit_pipeline(self, model: str, sampler: str) -> ConditionalDDPMPipeline:
        """A pipeline of its own for one request: the shared UNet of `model` with a new `sampler` scheduler."""
        if model not in self.digit_pipelines:
            raise ValueError(f"model must be one of {list(self.digit_pipelines)}, got {model!r}")
        template = self.digit_pipelines[model]
        pipe = ConditionalDDPMPipeline(
            unet=template.unet,
            scheduler=make_scheduler(sampler, template.scheduler.config),
            null_class_id=template.config.null_class_id,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def face_pipeline(self) -> DDIMFromNoisePipeline:
        """A pipeline of its own for one request, with the face model's stored scheduler and output mapping."""
        pipe = DDIMFromNoisePipeline(
            unet=self.faces.unet,
            scheduler=DDIMScheduler.from_config(self.faces.scheduler.config),
            image_normalization=self.faces.config.image_normalization,
            float64_betas=self.faces.config.float64_betas,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def face_noise_shape(self) -> tuple[int, int, int]:
        config = self.faces.unet.config
        return (config.in_channels, config.sample_size, config.sample_size)


def read_dann_card(folder: Path) -> ShippedDANN:
    """What a DANN folder's metrics.json (written by training/train_dann.py) says it was trained for."""
    metrics_file = Path(folder) / "metrics.json"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{folder} has no metrics.json: not a folder written by training/train_dann.py")
    metrics = json.loads(metrics_file.read_text())
    return ShippedDANN(Path(folder), metrics.get("source"), metrics.get("target"), metrics.get("mode"))


def shipped_dann(source: str, target: str, mode: str) -> list[ShippedDANN]:
    """The DANN folders of hub_cards trained with `mode` for source -> target."""
    cards = [read_dann_card(p) for p in sorted(hub_cards.ROOT.iterdir()) if (p / "metrics.json").is_file()]
    return [card for card in cards if (card.source, card.target, card.mode) == (source, target, mode)]


def load_models() -> DemoModels:
    """Every shipped model the demo uses, in eval mode on the CPU."""
    digit_pipelines = {}
    for name in DIGIT_MODELS:
        pipe = ConditionalDDPMPipeline.from_pretrained(hub_cards.path(name))
        pipe.set_progress_bar_config(disable=True)
        digit_pipelines[name] = pipe
    faces = DDIMFromNoisePipeline.from_pretrained(hub_cards.path(FACES))
    adapted_card = read_dann_card(hub_cards.path(ADAPTED))
    source_only_cards = shipped_dann(adapted_card.source, adapted_card.target, "source_only")
    source_only_card = source_only_cards[0] if source_only_cards else None
    return DemoModels(
        digit_pipelines=digit_pipelines,
        classifier=DigitClassifier.from_pretrained(hub_cards.path(CLASSIFIER)).eval(),
        faces=faces,
        face_noises=load_face_noises(hub_cards.path(FACES) / "noise"),
        adapted=DANNModel.from_pretrained(adapted_card.folder).eval(),
        adapted_card=adapted_card,
        source_only=DANNModel.from_pretrained(source_only_card.folder).eval() if source_only_card else None,
        source_only_card=source_only_card,
    )
