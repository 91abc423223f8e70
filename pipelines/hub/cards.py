"""Model cards (huggingface_hub `ModelCard` / `ModelCardData`): the one place the project builds and writes them.

A card is metadata (`card_data`, `classifier_card_data`, `accuracy_result`) and a markdown body: `build_card`
joins them, `save_card` writes a folder's README.md whole, `refresh_card` replaces the metadata and the "## Use"
section of an existing card and keeps the rest. The training commands build their bodies from their own records
and write them through these functions.

Every card shows two ways to use its folder: with this repository installed, and with only diffusers or
transformers (the folder's own code, `trust_remote_code=True`). `ref` is a local folder or a Hub id; the
snippets are run by the tests, so they stay true.
"""

from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from adapters.folders import write_file_atomically

# Hub ids of the digit datasets (adapters.digits.DIGIT_DATASETS). The LFW faces are scikit-image's 100 crops,
# which have no Hub id: the face cards name them in words only.
DATASET_IDS = {
    "mnistm": "Mike0307/MNIST-M",
    "usps": "flwrlabs/usps",
    "mnist": "ylecun/mnist",
    "svhn": "ufldl-stanford/svhn",
}

USE_HEADING = "## Use"


def _is_hub_id(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) == 2 and all(parts) and not ref.startswith((".", "~")) and not Path(ref).exists()


def _folder_line(ref: str) -> str:
    """A line that makes `folder` a local path, downloading a Hub repository first."""
    if _is_hub_id(ref):
        return f'folder = snapshot_download("{ref}")  # the whole repository: weights, code, example inputs'
    return f'folder = "{ref}"'


def _block(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def diffusion_usage_snippets(
    ref: str, pipeline_class: str = "ConditionalDDPMPipeline", num_inference_steps: int | None = None
) -> tuple[str, str]:
    """(with this repository installed, with only diffusers) snippets for a diffusion folder or Hub id.

    `pipeline_class`: "ConditionalDDPMPipeline" (digits with classifier-free guidance) or "DDIMFromNoisePipeline"
    (faces from the folder's `noise/*.pt`). `num_inference_steps` None keeps the pipeline's default.
    """
    steps = "" if num_inference_steps is None else f", num_inference_steps={num_inference_steps}"
    hub = "from huggingface_hub import snapshot_download\n" if _is_hub_id(ref) else ""
    if pipeline_class == "ConditionalDDPMPipeline":
        call = f"images = pipe(digit=[3, 7], guidance=2.0{steps}, generator=torch.Generator().manual_seed(0)).images"
        repo = f"""
import torch
{hub}from pipelines import ConditionalDDPMPipeline

{_folder_line(ref)}
pipe = ConditionalDDPMPipeline.from_pretrained(folder)
{call}  # one 3, one 7
"""
        library = f"""
import torch
{hub}from diffusers import DiffusionPipeline

{_folder_line(ref)}
pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)  # runs the folder's pipeline file
{call}  # one 3, one 7
"""
    elif pipeline_class == "DDPMPipeline":
        # a plain unconditional DDPM folder (training/train_ddpm.py): diffusers' own class, no code of its own
        repo = f"""
import torch
{hub}from pipelines import DDIMFromNoisePipeline

{_folder_line(ref)}
pipe = DDIMFromNoisePipeline.from_pretrained(folder, preset="diffusers")
size = pipe.unet.config.sample_size
noise = torch.randn(4, pipe.unet.config.in_channels, size, size, generator=torch.Generator().manual_seed(0))
images = pipe(noise{steps}).images  # DDIM from these noises
"""
        library = f"""
import torch
{hub}from diffusers import DDIMPipeline, DDIMScheduler, DiffusionPipeline

{_folder_line(ref)}
pipe = DiffusionPipeline.from_pretrained(folder)  # a DDPMPipeline
pipe = DDIMPipeline(pipe.unet, DDIMScheduler.from_config(pipe.scheduler.config))
images = pipe(batch_size=4{steps or ", num_inference_steps=50"}, generator=torch.Generator().manual_seed(0)).images
"""
    elif pipeline_class == "DDIMFromNoisePipeline":
        load = """noises = [torch.load(path, weights_only=True) for path in sorted(glob.glob(f"{folder}/noise/*.pt"))]
images = pipe(noises, eta=0.0{steps}).images  # the folder's GT/*.png""".replace("{steps}", steps)
        repo = f"""
import glob

import torch
{hub}from pipelines import DDIMFromNoisePipeline

{_folder_line(ref)}
pipe = DDIMFromNoisePipeline.from_pretrained(folder, preset="course")
{load}
"""
        library = f"""
import glob

import torch
{hub}from diffusers import DiffusionPipeline

{_folder_line(ref)}
pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)  # runs the folder's pipeline file
{load}
"""
    else:
        raise ValueError(
            f"no usage snippet for {pipeline_class!r}; "
            "expected 'ConditionalDDPMPipeline', 'DDIMFromNoisePipeline' or 'DDPMPipeline'"
        )
    return _block(repo), _block(library)


def classifier_usage_snippets(ref: str, model_class: str) -> tuple[str, str]:
    """(with this repository installed, with only transformers) snippets labelling `digit.png`.

    `model_class`: "DANNModel" or "DigitClassifier".
    """
    hub = "from huggingface_hub import snapshot_download\n" if _is_hub_id(ref) else ""
    if model_class == "DANNModel":
        repo = f"""
{hub}from adapters import digit_pixel_values, read_image_file
from pipelines import DANNModel

{_folder_line(ref)}
model = DANNModel.from_pretrained(folder)
digits = model.predict(digit_pixel_values([read_image_file("digit.png")]))  # tensor of class ids
"""
    elif model_class == "DigitClassifier":
        repo = f"""
{hub}from PIL import Image

from pipelines import DigitClassifier

{_folder_line(ref)}
model = DigitClassifier.from_pretrained(folder)
digits = model.predict(model.images_to_tensor([Image.open("digit.png")]))  # tensor of class ids
"""
    else:
        raise ValueError(f"no usage snippet for {model_class!r}; expected 'DANNModel' or 'DigitClassifier'")
    library = f"""
{hub}from transformers import pipeline

{_folder_line(ref)}
classify = pipeline("image-classification", model=folder, trust_remote_code=True)  # the folder's own code
print(classify("digit.png"))  # [{{'label': '7', 'score': ...}}, ...], labels "0".."9"
"""
    return _block(repo), _block(library)


def usage_section(repo_snippet: str, library_snippet: str, library: str, command: str | None = None) -> str:
    """The card's "## Use" section: the command (if any), then the two snippets."""
    text = f"{USE_HEADING}\n\n"
    if command:
        text += f"```bash\n{command}\n```\n\n"
    text += f"With this repository installed (`pip install -e .`):\n\n{repo_snippet}\n\n"
    text += (
        f"With only `{library}` installed: the folder carries its code, which `trust_remote_code=True` "
        f"runs (read it first):\n\n{library_snippet}\n"
    )
    return text


def card_data(
    *,
    library_name: str,
    pipeline_tag: str,
    datasets: list[str],
    model_name: str,
    eval_results: list[EvalResult],
    tags: list[str],
    metrics: list[str],
) -> ModelCardData:
    """Card metadata; datasets must be Hub ids (owner/name)."""
    for dataset in datasets:
        if "/" not in dataset:
            raise ValueError(f"dataset {dataset!r} is not a Hub id (owner/name); see DATASET_IDS")
    return ModelCardData(
        library_name=library_name,
        pipeline_tag=pipeline_tag,
        datasets=datasets or None,
        model_name=model_name,
        eval_results=eval_results,
        tags=tags,
        metrics=metrics,
    )


def accuracy_result(dataset: str, split: str, accuracy: float) -> EvalResult:
    """The image-classification accuracy measured on one split of a digit dataset ("mnistm", "usps", ...)."""
    hub_id = DATASET_IDS.get(dataset, dataset)
    return EvalResult(
        task_type="image-classification",
        dataset_type=hub_id,
        dataset_name=f"{dataset} ({split})",
        dataset_split=split,
        metric_type="accuracy",
        metric_value=round(float(accuracy), 4),
    )


def classifier_card_data(
    model_name: str, datasets: list[str], results: list[EvalResult], tags: list[str]
) -> ModelCardData:
    """Metadata of a digit classifier folder (a transformers model with its own code)."""
    return card_data(
        library_name="transformers",
        pipeline_tag="image-classification",
        datasets=[DATASET_IDS[name] for name in datasets],
        model_name=model_name,
        eval_results=results,
        tags=["image-classification", "digits", "custom_code", *tags],
        metrics=["accuracy"],
    )


def build_card(data: ModelCardData, body: str) -> ModelCard:
    """A card from its metadata and markdown body."""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body.strip()}\n")


def save_card(card: ModelCard, folder: str | Path) -> Path:
    """Write the card as `folder/README.md`, whole or not at all (a temporary file renamed into place)."""
    path = Path(folder) / "README.md"
    write_file_atomically(path, lambda temporary: card.save(temporary))
    return path


def with_usage_section(body: str, section: str) -> str:
    """`body` with its "## Use" section replaced by `section`, or `section` added before the first other
    "## " heading (at the end when there is none)."""
    pattern = re.compile(rf"^{re.escape(USE_HEADING)}\n.*?(?=^## |\Z)", flags=re.MULTILINE | re.DOTALL)
    if pattern.search(body):
        return pattern.sub(lambda _: section.rstrip() + "\n\n", body, count=1).rstrip() + "\n"
    first = re.search(r"^## ", body, flags=re.MULTILINE)
    if first is None:
        return body.rstrip() + "\n\n" + section
    return body[: first.start()] + section.rstrip() + "\n\n" + body[first.start() :]


def refresh_card(folder: str | Path, data: ModelCardData, section: str) -> ModelCard:
    """Rewrite a folder's README.md with new metadata and "## Use" section, keeping the rest of its text."""
    path = Path(folder) / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no README.md card to refresh")
    card = build_card(data, with_usage_section(ModelCard.load(path).text, section))
    save_card(card, folder)
    return card


def classifier_use_section(ref: str, model_class: str, command: str) -> str:
    """The "## Use" section of a digit classifier card: its command, then both snippets (`model_class`: as in
    `classifier_usage_snippets`)."""
    return usage_section(*classifier_usage_snippets(ref, model_class), "transformers", command=command)
