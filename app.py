"""The project in a browser: generate digits, DDIM from noise, adapt a digit. Offline, on the shipped models.

    pip install torch==2.13.0 -e ".[demo]" && python app.py      # then open http://127.0.0.1:7860

The same file is a Hugging Face Space's `app_file` (see `space/README.md`). This file holds the page and its
wiring only; what each button does lives in `pipelines.demo`, which loads the models of `hub_cards/` once, here,
at start. Every event that runs a model waits in one queue (`concurrency_id="models"`) that runs as many
requests at once as there are cores (at most 4), each on one torch thread. Gradio's own variables
(`GRADIO_SERVER_NAME`, `GRADIO_SERVER_PORT`, ...) set the address.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import gradio as gr
import torch

from pipelines.command_line import USER_ERRORS
from pipelines.conditional_ddpm.schedulers import SCHEDULERS
from pipelines.demo import adapt, digits, faces
from pipelines.demo.models import DIGIT_MODELS, DemoModels, load_models

# The models are small: on this project's shared 2-core CPU a request on two torch threads spent 5-8x the CPU time
# of the same request on one (the threads wait on each other), while two one-thread requests keep both cores busy.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
WORKERS = min(CORES, 4)
QUEUE = {"concurrency_id": "models", "concurrency_limit": WORKERS}
MAX_FILE_SIZE = "10mb"  # a noise file of the face model is 4 kB, a digit image a few kB
# 28x28 digits and 32x32 faces are shown large; without this the browser blurs them
CSS = ".pixelated img { image-rendering: pixelated; }"
# A parameter defaulting to a Progress gets the page's progress bar: Gradio passes each call a tracker of its own
PROGRESS = gr.Progress()
# png: the images a client downloads are the pipeline's pixels (Gradio's default webp is lossy); a single image
# keeps its column's width instead of filling the gallery
OUTPUT_GALLERY = dict(format="png", fit_columns=False, interactive=False, elem_classes="pixelated")


def shown_in_page(fn):
    """User errors (the commands' one-line messages) become `gr.Error`, which the page shows; the server goes on."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except USER_ERRORS as error:
                raise gr.Error(str(error), print_exception=False) from None

        return generator

    @functools.wraps(fn)
    def function(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as error:
            raise gr.Error(str(error), print_exception=False) from None

    return function


class StopButtons:
    """What the Stop buttons stop: the running work of the session that pressed one, at its next step.

    Gradio's own cancel (`cancels=`) only stops waiting: the worker thread would go on denoising, holding a core
    for minutes (400 DDPM steps for 100 digits). So each long request registers a flag for its session, its
    progress callback checks it at every step, and `stop` sets every flag of the session.
    """

    def __init__(self):
        self._flags: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def running(self, session: str) -> Iterator[threading.Event]:
        flag = threading.Event()
        with self._lock:
            self._flags.setdefault(session, set()).add(flag)
        try:
            yield flag
        finally:
            with self._lock:
                self._flags[session].discard(flag)
                if not self._flags[session]:
                    del self._flags[session]

    def stop(self, request: gr.Request) -> None:
        with self._lock:
            for flag in self._flags.get(request.session_hash, ()):
                flag.set()


STOP = StopButtons()


def progress_bar(progress: gr.Progress, stop: threading.Event):
    """The `(done, total, what)` callback of pipelines.demo: the page's progress bar, and the Stop button."""

    def report(done: int, total: int, what: str) -> None:
        if stop.is_set():
            raise gr.Error("Stopped.", print_exception=False)
        progress((done, total), desc=what)

    return report


def digits_tab(models: DemoModels) -> None:
    gr.Markdown(
        "Class-conditional DDPM with classifier-free guidance (`ConditionalDDPMPipeline`). Under each image, "
        "`asked→read confidence`: what the scoring classifier (`hub_cards/mnistm-digit-classifier`) reads. "
        "The same seed gives the same images as `python -m pipelines.conditional_ddpm --seed N` (deterministic "
        "samplers)."
    )
    with gr.Row():
        with gr.Column(scale=1):
            digit_choice = gr.CheckboxGroup(
                [str(d) for d in range(10)], value=["3"], label="digit(s)", elem_id="digits"
            )
            images_per_digit = gr.Slider(1, digits.MAX_IMAGES_PER_DIGIT, value=1, step=1, label="images per digit")
            guidance = gr.Slider(0.0, 5.0, value=2.0, step=0.1, label="guidance w")
            sampler = gr.Dropdown(sorted(SCHEDULERS), value="dpm", label="sampler")
            steps = gr.Number(10, precision=0, label="steps")
            seed = gr.Number(0, precision=0, label="seed")
            model = gr.Radio(list(DIGIT_MODELS), value=DIGIT_MODELS[0], label="model (the small one: half the CPU)")
            with gr.Row():
                generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
                reverse_button = gr.Button("Reverse process", elem_id="reverse")
                stop_button = gr.Button("Stop", variant="stop")
        with gr.Column(scale=2):
            summary = gr.Markdown(elem_id="generate-summary")
            gallery = gr.Gallery(label="generated digits", columns=10, elem_id="digit-gallery", **OUTPUT_GALLERY)
            frames = gr.Gallery(label="reverse process: x_t from t = T (noise) to 0", columns=6, **OUTPUT_GALLERY)
    inputs = [digit_choice, images_per_digit, guidance, sampler, steps, seed, model]

    @shown_in_page
    def generate(
        digit_values,
        per_digit,
        w,
        sampler_name,
        num_steps,
        seed_value,
        model_name,
        request: gr.Request,
        progress=PROGRESS,
    ):
        asked = digits.make_request(digit_values, per_digit, w, sampler_name, num_steps, seed_value, model_name)
        start = time.perf_counter()
        with STOP.running(request.session_hash) as stop:
            for images, verdicts in digits.generate_rows(models, asked, progress_bar(progress, stop)):
                items = [(image, verdict.caption()) for image, verdict in zip(images, verdicts, strict=True)]
                correct = sum(v.correct for v in verdicts)
                yield (
                    items,
                    (
                        f"**{correct} / {len(verdicts)}** recognised by the scoring classifier · {asked.model}, "
                        f"{asked.sampler} {asked.steps} steps, w = {asked.guidance:g}, seed {asked.seed} · "
                        f"{time.perf_counter() - start:.2f} s"
                    ),
                )

    @shown_in_page
    def reverse(
        digit_values,
        per_digit,
        w,
        sampler_name,
        num_steps,
        seed_value,
        model_name,
        request: gr.Request,
        progress=PROGRESS,
    ):
        asked = digits.make_request(digit_values, per_digit, w, sampler_name, num_steps, seed_value, model_name)
        with STOP.running(request.session_hash) as stop:
            frames = digits.reverse_process(models, asked, progress_bar(progress, stop))
        return [(image, f"t = {t}") for t, image in frames]

    generating = generate_button.click(generate, inputs, [gallery, summary], api_name="generate", **QUEUE)
    reversing = reverse_button.click(reverse, inputs, frames, api_name="reverse_process", **QUEUE)
    # outside the queue, so that it is not waiting behind the work it stops
    stop_button.click(STOP.stop, cancels=[generating, reversing], queue=False, api_name="stop")

    @shown_in_page
    def default_steps(model_name, sampler_name):
        return digits.sampler_default_steps(models, model_name, sampler_name)

    sampler.change(default_steps, [model, sampler], steps, queue=False, api_visibility="private")


def faces_tab(models: DemoModels) -> None:
    shipped = sorted(models.face_noises)
    gr.Markdown(
        "DDIM from given initial noises (`DDIMFromNoisePipeline`, the course preset) with the demo face model "
        "`hub_cards/ddpm-lfw-faces` and its course-format noises, or your own `NN.pt` files (tensors "
        f"[1, {', '.join(map(str, models.face_noise_shape()))}], read with `weights_only=True`). eta = 0 is "
        "deterministic; slerp keeps the norm |x_T| of the noise, lerp shrinks it halfway."
    )
    with gr.Row():
        with gr.Column(scale=1):
            noise_files = gr.File(file_count="multiple", file_types=[".pt"], label="your NN.pt noises (optional)")
            with gr.Row():
                name_a = gr.Dropdown(shipped, value=shipped[0], label="noise A", allow_custom_value=True)
                name_b = gr.Dropdown(shipped, value=shipped[1], label="noise B", allow_custom_value=True)
            eta = gr.Slider(0.0, 1.0, value=0.0, step=0.1, label="eta")
            interpolation = gr.Radio(sorted(faces.INTERPOLATIONS), value="slerp", label="interpolation")
            alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="alpha (0: noise A, 1: noise B)")
            steps = gr.Number(50, precision=0, label="DDIM steps")
            seed = gr.Number(0, precision=0, label="seed (of the eta > 0 noise)")
            with gr.Row():
                run_button = gr.Button("Denoise", variant="primary")
                grid_button = gr.Button("Eta grid")
                stop_button = gr.Button("Stop", variant="stop")
        with gr.Column(scale=2):
            pair = gr.Gallery(label="A, the mix at alpha, B", columns=3, **OUTPUT_GALLERY)
            grid = gr.Image(label="eta grid: eta 0.0 ... 0.9 x the first four noises", format="png")

    @shown_in_page
    def noise_names(files):
        names = sorted(faces.noise_set(models, files))
        second = names[min(1, len(names) - 1)]
        return gr.Dropdown(choices=names, value=names[0]), gr.Dropdown(choices=names, value=second)

    @shown_in_page
    def denoise(files, a, b, eta_value, method, alpha_value, num_steps, seed_value):
        noises = faces.noise_set(models, files)
        return faces.ddim_pair(models, noises, a, b, eta_value, num_steps, seed_value, alpha_value, method)

    @shown_in_page
    def eta_grid(files, num_steps, seed_value, request: gr.Request, progress=PROGRESS):
        noises = faces.noise_set(models, files)
        with STOP.running(request.session_hash) as stop:
            yield from faces.eta_grid(models, noises, num_steps, seed_value, progress_bar(progress, stop))

    noise_files.change(noise_names, noise_files, [name_a, name_b], api_visibility="private")
    inputs = [noise_files, name_a, name_b, eta, interpolation, alpha, steps, seed]
    events = [run_button.click(denoise, inputs, pair, api_name="ddim", **QUEUE)]
    for slider in (eta, alpha):  # move a slider, see what changes
        events.append(slider.release(denoise, inputs, pair, api_visibility="private", **QUEUE))
    events.append(grid_button.click(eta_grid, [noise_files, steps, seed], grid, api_name="eta_grid", **QUEUE))
    stop_button.click(STOP.stop, cancels=events, queue=False, api_visibility="private")


def adapt_tab(models: DemoModels) -> None:
    card = models.adapted_card
    gr.Markdown(
        f"The adapted {card.source} → {card.target} classifier `hub_cards/{card.folder.name}` (mode `{card.mode}`), "
        "read as `python -m pipelines.dann --with_confidence` reads a file. USPS digits are light on dark: a drawing "
        "is inverted to that; an upload is used as it is."
    )
    gr.Markdown(adapt.source_only_note(models))
    with gr.Row():
        with gr.Column():
            # a File, not an Image: Gradio would decode an Image itself, and answer a non-image with its traceback
            upload = gr.File(file_types=["image"], label="a digit image (PNG, JPEG, ...)")
            upload_button = gr.Button("Classify the upload", variant="primary")
        with gr.Column():
            drawing = gr.Sketchpad(
                type="numpy",
                image_mode="RGBA",
                canvas_size=(280, 280),
                brush=gr.Brush(default_size=14, colors=["#000000"], color_mode="fixed"),
                label="or draw one",
            )
            drawing_button = gr.Button("Classify the drawing", variant="primary")
        with gr.Column():
            adapted_label = gr.Label(num_top_classes=3, label=f"adapted model ({card.mode})")
            source_only_label = gr.Label(
                num_top_classes=3, label="source-only model", visible=models.source_only is not None
            )
            seen = gr.Image(label="what the models see (28x28)", format="png", elem_classes="pixelated")

    def answer(image):
        result = adapt.adapt(models, image)
        return result["adapted"], result["source_only"], result["input"]

    @shown_in_page
    def classify_upload(path):
        if not path:
            raise ValueError("upload a digit image first")
        return answer(adapt.open_digit_image(path))

    @shown_in_page
    def classify_drawing(editor):
        composite = (editor or {}).get("composite")
        if composite is None:
            raise ValueError("the drawing is empty: draw a digit first")
        return answer(adapt.drawing_to_digit(composite))

    outputs = [adapted_label, source_only_label, seen]
    upload_button.click(classify_upload, upload, outputs, api_name="adapt_upload", **QUEUE)
    drawing_button.click(classify_drawing, drawing, outputs, api_name="adapt_drawing", **QUEUE)


def build_demo(models: DemoModels) -> gr.Blocks:
    with gr.Blocks(title="guided-diffusion-da") as demo:
        gr.Markdown(
            "# guided-diffusion-da\nConditional diffusion with classifier-free guidance, DDIM from given noises and "
            "domain adaptation, on the models shipped in `hub_cards/`, on this machine's CPU."
        )
        with gr.Tab("Generate digits"):
            digits_tab(models)
        with gr.Tab("DDIM from noise"):
            faces_tab(models)
        with gr.Tab("Adapt a digit"):
            adapt_tab(models)
    return demo


def main() -> None:
    torch.set_num_threads(1)  # one per request; WORKERS requests at once
    demo = build_demo(load_models())
    demo.queue(max_size=64).launch(max_file_size=MAX_FILE_SIZE, show_error=True, css=CSS)


if __name__ == "__main__":
    main()
