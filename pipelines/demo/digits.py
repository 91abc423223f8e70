"""Generate digits for the demo: a grid with the scoring classifier's verdict under each image, and the reverse
process of one digit as frames.

The starting noise of image `index` (from 1) of `digit` comes from its own generator, seeded by (seed, digit,
index) exactly as the course-output command seeds `{digit}_{index:03d}.png`, so with the deterministic samplers
(dpm, unipc, ddim) an image depends only on those three and the settings, never on what else the page asked
for or on other people's requests. `ddpm` also draws noise at every step, from one generator per digit row
seeded by (seed, digit, 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import PIL.Image
import torch

from pipelines.conditional_ddpm.course_output import image_seed, starting_noise
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import NUM_DIGITS
from pipelines.conditional_ddpm.schedulers import SCHEDULERS, default_steps
from pipelines.demo.models import DemoModels
from pipelines.seeds import step_noise_generator

# A page request is at most the report's 10x10 grid; more belongs to the course-output command.
MAX_IMAGES_PER_DIGIT = 10
MAX_FRAMES = 11

# (done, total, what) -> None: how far a request is, for the page's progress bar
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class DigitRequest:
    digits: tuple[int, ...]
    images_per_digit: int = 1
    guidance: float = 2.0
    sampler: str = "dpm"
    steps: int = 10
    seed: int = 0
    model: str = "cfg-mnistm-small"


@dataclass
class Verdict:
    """The scoring classifier's reading of one generated image."""

    digit: int  # the digit asked for
    predicted: int
    confidence: float  # softmax probability of `predicted`

    @property
    def correct(self) -> bool:
        return self.predicted == self.digit

    def caption(self) -> str:
        """ "7→7 1.00": the digit asked for, the classifier's reading and its confidence; ✗ marks a miss."""
        return f"{'' if self.correct else '✗ '}{self.digit}→{self.predicted} {self.confidence:.2f}"


def parse_digits(value: str | int | Sequence) -> tuple[int, ...]:
    """Digits from the page: a list of digits or strings ("3", "7"), or text such as "3 7" or "0-9"."""
    if isinstance(value, str):
        text = value.replace(",", " ").strip()
        if "-" in text and len(text.split()) == 1:
            low, _, high = text.partition("-")
            value = list(range(int(low), int(high) + 1)) if low.isdigit() and high.isdigit() else [text]
        else:
            value = text.split()
    elif not isinstance(value, Sequence):
        value = [value]
    digits = []
    for item in value:
        text = str(item).strip()
        if not text.isdigit() or not 0 <= int(text) < NUM_DIGITS:
            raise ValueError(f"digits must be whole numbers 0-{NUM_DIGITS - 1}, got {item!r}")
        digits.append(int(text))
    if not digits:
        raise ValueError("choose at least one digit")
    return tuple(digits)


def whole_number(value, name: str) -> int:
    """A number from the page (Gradio sends floats such as 10.0) as an int; 10.5, NaN or text are errors."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if value != int(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def make_request(digits, images_per_digit, guidance, sampler, steps, seed, model) -> DigitRequest:
    """A `DigitRequest` from the page's values, with each bad one named."""
    images_per_digit = whole_number(images_per_digit, "images per digit")
    if not 1 <= images_per_digit <= MAX_IMAGES_PER_DIGIT:
        raise ValueError(f"images per digit must be between 1 and {MAX_IMAGES_PER_DIGIT}, got {images_per_digit}")
    if sampler not in SCHEDULERS:
        raise ValueError(f"sampler must be one of {sorted(SCHEDULERS)}, got {sampler!r}")
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)):
        raise ValueError(f"guidance w must be a number, got {guidance!r}")
    return DigitRequest(
        digits=parse_digits(digits),
        images_per_digit=images_per_digit,
        guidance=float(guidance),
        sampler=sampler,
        # the pipeline names the allowed range (1 to the trained steps) when it refuses a value
        steps=whole_number(steps, "steps (num_inference_steps)"),
        seed=whole_number(seed, "seed"),
        model=model,
    )


def sampler_default_steps(models: DemoModels, model: str, sampler: str) -> int:
    """The steps the pipeline takes for `sampler` when none are given (all 400 for ddpm, 10 for dpm, ...)."""
    template = models.digit_pipelines.get(model) or next(iter(models.digit_pipelines.values()))
    return default_steps(sampler, template.scheduler.config.num_train_timesteps)


@torch.no_grad()
def score(models: DemoModels, images: list[PIL.Image.Image], digits: list[int]) -> list[Verdict]:
    """The scoring classifier's verdict on each image (the model of `python -m pipelines.digit_classifier`)."""
    classifier = models.classifier
    probabilities = classifier(classifier.images_to_tensor(images)).softmax(dim=1)
    confidence, predicted = probabilities.max(dim=1)
    return [Verdict(d, int(p), float(c)) for d, p, c in zip(digits, predicted, confidence, strict=True)]


def _step_callback(progress: Progress | None, done: int, total: int, what: str):
    if progress is None:
        return None

    def on_step_end(pipe, step, timestep, callback_kwargs):
        progress(done + step + 1, total, what)
        return {}

    return on_step_end


def generate_rows(
    models: DemoModels, request: DigitRequest, progress: Progress | None = None
) -> Iterator[tuple[list[PIL.Image.Image], list[Verdict]]]:
    """The grid one digit row at a time: after each row, every image so far and its verdict.

    Rows are separate pipeline calls so that the page can show them as they come and a cancelled request
    stops after the row it is in.
    """
    pipe = models.digit_pipeline(request.model, request.sampler)
    pipe.check_inputs(request.digits, request.guidance, request.images_per_digit, request.steps)
    shape = pipe.sample_shape()
    images, verdicts = [], []
    total = len(request.digits) * request.steps
    for row, digit in enumerate(request.digits):
        jobs = [(digit, index) for index in range(1, request.images_per_digit + 1)]
        out = pipe(
            digit=[digit] * len(jobs),
            guidance=request.guidance,
            num_inference_steps=request.steps,
            latents=starting_noise(jobs, request.seed, shape),
            generator=step_noise_generator(image_seed(request.seed, digit, 1)),
            callback_on_step_end=_step_callback(progress, row * request.steps, total, f"digit {digit}"),
        )
        images += out.images
        verdicts += score(models, out.images, out.labels)
        yield images, verdicts


def frame_timesteps(visited: Sequence[int], max_frames: int = MAX_FRAMES) -> list[int]:
    """Up to `max_frames` report-convention t, evenly spread over the visited ones, from pure noise to 0."""
    visited = sorted(set(visited), reverse=True)
    if len(visited) <= max_frames:
        return visited
    positions = [round(i * (len(visited) - 1) / (max_frames - 1)) for i in range(max_frames)]
    return [visited[p] for p in positions]


def reverse_process(
    models: DemoModels, request: DigitRequest, progress: Progress | None = None
) -> list[tuple[int, PIL.Image.Image]]:
    """(t, x_t) frames of the first image of the first digit of `request`: the same image the grid shows first.

    t follows the report: T is the pure noise the loop starts from, 0 the finished digit.
    """
    pipe = models.digit_pipeline(request.model, request.sampler)
    digit = request.digits[0]
    pipe.check_inputs(digit, request.guidance, 1, request.steps)
    pipe.scheduler.set_timesteps(request.steps)
    visited = [int(t) + 1 for t in pipe.scheduler.timesteps] + [0]
    frames = frame_timesteps(visited)
    out = pipe(
        digit=digit,
        guidance=request.guidance,
        num_inference_steps=request.steps,
        latents=starting_noise([(digit, 1)], request.seed, pipe.sample_shape()),
        generator=step_noise_generator(image_seed(request.seed, digit, 1)),
        capture_timesteps=frames,
        callback_on_step_end=_step_callback(progress, 0, request.steps, f"digit {digit}"),
    )
    return [(t, out.intermediates[t][0]) for t in frames]
