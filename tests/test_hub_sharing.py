"""Sharing on the Hub: every shipped folder works with only diffusers / transformers, as the project's classes do.

The library-only route runs in a subprocess where this repository's packages cannot be imported (a meta-path
finder refuses them), offline, with its own HF_HOME so that the folders' code is imported fresh.
"""

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from huggingface_hub import ModelCard
from PIL import Image

import hub_cards
from adapters import decode_digits, digit_pixel_values, load_digits, read_image_file
from pipelines import ConditionalDDPMPipeline, DANNConfig, DANNModel, DDIMFromNoisePipeline, DigitClassifier
from pipelines.hub import publish, remote_code
from pipelines.hub.cards import (
    DATASET_IDS,
    accuracy_result,
    build_card,
    card_data,
    classifier_usage_snippets,
    diffusion_usage_snippets,
    refresh_card,
    save_card,
)
from tests.tiny_models import tiny_unet

REPO_ROOT = Path(__file__).resolve().parents[1]
HUB_CARDS = hub_cards.ROOT
# MSE on the 0-255 scale (the course's grader's measure) within which a face counts as its GT/ image: the bound that
# tests/test_ddim_shipped_model.py gives an independent float64 implementation (the grader passes below 20)
GT_MSE_TOLERANCE = 0.5
MODEL_FOLDERS = ["cfg-mnistm", "cfg-mnistm-small", "ddpm-lfw-faces", "dann-mnistm-usps", "mnistm-digit-classifier"]

BLOCK_PROJECT = """
import importlib.abc, sys
class BlockProject(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"pipelines", "training", "adapters", "hub_cards", "benchmarks"}:
            raise ModuleNotFoundError(f"{name} is blocked: only the libraries may be used")
sys.meta_path.insert(0, BlockProject())
try:
    import pipelines
    raise SystemExit("the project is importable: the test would prove nothing")
except ModuleNotFoundError:
    pass
"""


def run_without_project(code: str, cwd: Path) -> str:
    """Run `code` with only the libraries importable; returns stdout, fails the test with stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(cwd / "hf-home"), "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_PROJECT + textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_diffusion_folders_sample_the_same_images_with_only_diffusers(tmp_path):
    # A copy of the faces folder with one noise keeps the 50-step DDIM of the card's snippet short.
    faces = tmp_path / "ddpm-lfw-faces"
    shutil.copytree(HUB_CARDS / "ddpm-lfw-faces", faces, ignore=shutil.ignore_patterns("0[1-9].pt"))
    # The cards' diffusers-only snippets, run as written (1 step for the digits); then the faces at eta 0.5.
    snippets = {
        name: diffusion_usage_snippets(str(HUB_CARDS / name), "ConditionalDDPMPipeline", 1)[1]
        for name in ("cfg-mnistm", "cfg-mnistm-small", "cfg-mnistm-fast")
    }
    snippets["ddpm-lfw-faces"] = diffusion_usage_snippets(str(faces), "DDIMFromNoisePipeline")[1]
    # same thread count as this process: float sums then run in the same order, so images match to the bit
    code = f"import numpy as np, torch\ntorch.set_num_threads({torch.get_num_threads()})\nout = {{}}\n"
    for name, snippet in snippets.items():
        code += snippet.strip().removeprefix("```python").removesuffix("```")
        code += f"\nout[{name!r}] = np.stack([np.asarray(i) for i in images])\n"
        code += "assert type(pipe).__module__.startswith('diffusers_modules'), type(pipe).__module__\n"
    code += """
noise = torch.load(f"{folder}/noise/00.pt", weights_only=True)
generator = torch.Generator().manual_seed(1)  # not 0: 00.pt is the first draw of seed 0
out["faces-eta"] = pipe(noise, eta=0.5, num_inference_steps=5, generator=generator, output_type="np").images
np.savez("images.npz", **out)
"""
    run_without_project(code, tmp_path)
    library = np.load(tmp_path / "images.npz")

    for name in ("cfg-mnistm", "cfg-mnistm-small", "cfg-mnistm-fast"):
        pipe = ConditionalDDPMPipeline.from_pretrained(HUB_CARDS / name)  # no trust_remote_code needed
        pipe.set_progress_bar_config(disable=True)
        # the snippet's call: one 3 and one 7, w = 2, seed 0 (1 step here)
        images = pipe(
            digit=[3, 7], guidance=2.0, num_inference_steps=1, generator=torch.Generator().manual_seed(0)
        ).images
        assert np.array_equal(np.stack([np.asarray(i) for i in images]), library[name]), name

    pipe = DDIMFromNoisePipeline.from_pretrained(faces, preset="course")
    pipe.set_progress_bar_config(disable=True)
    noise = torch.load(faces / "noise" / "00.pt", weights_only=True)
    # the folder's ground truth (the project's command's output, tests/test_ddim_shipped_model.py), by the course's
    # measure: GT/ was rendered on one CPU, and another CPU's float sums round differently over 50 steps and the
    # min-max mapping, so pixels may move by a level or two; another convention gives MSE 932.8 (README)
    gt = np.asarray(Image.open(faces / "GT" / "00.png")).astype(np.float64)
    assert np.mean((library["ddpm-lfw-faces"][0].astype(np.float64) - gt) ** 2) < GT_MSE_TOLERANCE
    eta = pipe(noise, eta=0.5, num_inference_steps=5, generator=torch.Generator().manual_seed(1), output_type="np")
    assert np.array_equal(eta.images, library["faces-eta"])


@pytest.fixture
def digit_images(tmp_path_factory, shared_data):
    """30 real validation digits of each domain as PNG files at their native size (USPS 16x16 grey)."""
    folder = tmp_path_factory.mktemp("digits")
    for name in ("usps", "mnistm"):
        dataset = load_digits(name, shared_data / name, "validation").select(range(30))
        for index, row in enumerate(dataset):
            row["image"].save(folder / f"{name}_{index:02d}.png")
    return folder


def test_classifier_folders_label_digits_with_only_transformers(tmp_path, digit_images):
    code = f"""
import json, pathlib
from transformers import AutoModelForImageClassification, pipeline
files = sorted(pathlib.Path({str(digit_images)!r}).glob("*.png"))
out = {{}}
for name in ("dann-mnistm-usps", "mnistm-digit-classifier"):
    folder = {str(HUB_CARDS)!r} + "/" + name
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    assert model.config.id2label == {{i: str(i) for i in range(10)}}
    classify = pipeline("image-classification", model=folder, trust_remote_code=True)
    out[name] = [classify(str(path), top_k=1)[0]["label"] for path in files]
json.dump(out, open("labels.json", "w"))
"""
    run_without_project(code, tmp_path)
    library = json.loads((tmp_path / "labels.json").read_text())

    files = sorted(digit_images.glob("*.png"))
    images = [read_image_file(path) for path in files]
    dann = DANNModel.from_pretrained(HUB_CARDS / "dann-mnistm-usps").predict(digit_pixel_values(images))
    classifier = DigitClassifier.from_pretrained(HUB_CARDS / "mnistm-digit-classifier")
    scored = classifier.predict(classifier.images_to_tensor(images))
    assert library["dann-mnistm-usps"] == [str(int(d)) for d in dann]
    assert library["mnistm-digit-classifier"] == [str(int(d)) for d in scored]
    assert len(set(library["dann-mnistm-usps"])) >= 5  # real digits of many classes, not one constant answer


def test_transformers_snippet_runs_as_written(tmp_path, digit_images):
    (tmp_path / "digit.png").write_bytes((digit_images / "usps_00.png").read_bytes())
    folder = str(HUB_CARDS / "dann-mnistm-usps")
    repo_snippet, library_snippet = classifier_usage_snippets(folder, "DANNModel")
    printed = run_without_project(library_snippet.strip().removeprefix("```python").removesuffix("```"), tmp_path)
    namespace = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(repo_snippet.strip().removeprefix("```python").removesuffix("```"), namespace)
    finally:
        os.chdir(cwd)
    assert f"'label': '{int(namespace['digits'][0])}'" in printed.splitlines()[0].split("},")[0]


def test_shipped_code_copies_are_the_package_source():
    for name in MODEL_FOLDERS:
        assert remote_code.declared_modules(HUB_CARDS / name), f"{name} names no code of its own"
        assert remote_code.stale_code(HUB_CARDS / name) == [], f"run python -m pipelines.hub.remote_code {name}"
    assert remote_code.main(remote_code.parse_args(["--check", *(str(HUB_CARDS / n) for n in MODEL_FOLDERS)])) == {}


# What a folder's code may import under trust_remote_code: the standard library, the libraries that load it (and
# safetensors, which both of them require) and its sibling files. Anything else, such as `pipelines`, would import
# whatever module of that name the user's working folder holds.
REMOTE_CODE_LIBRARIES = {"torch", "numpy", "PIL", "diffusers", "transformers", "safetensors"}


def test_remote_code_imports_only_the_libraries_and_its_sibling_files():
    files = sorted(path for name in MODEL_FOLDERS for path in (HUB_CARDS / name).glob("*.py"))
    assert len(files) >= 10
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):  # every import, also inside try / if / functions
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 1 and (path.parent / f"{node.module}.py").is_file(), (path, node.module)
                continue
            else:
                continue
            for module in modules:
                top = module.partition(".")[0]
                assert top in sys.stdlib_module_names or top in REMOTE_CODE_LIBRARIES, f"{path} imports {module}"


def test_the_package_imports_each_shared_file_from_one_source():
    # transformers copies a model's relative imports from the model file's own folder: the package's siblings
    # must be the very files the Hub folders get (pipelines/dann links to the digit classifier's)
    for module in remote_code.CODE_MODULES:
        folder = remote_code.source_file(module).parent
        for sibling in remote_code.sibling_imports(module):
            assert (folder / f"{sibling}.py").samefile(remote_code.source_file(sibling)), (module, sibling)
    assert remote_code.required_modules(HUB_CARDS / "dann-mnistm-usps") == [
        "configuration_dann",
        "image_processing_digits",
        "modeling_dann",
        "pretrained_helpers",
    ]


def test_a_stale_copy_is_found_and_refreshed(tmp_path):
    folder = tmp_path / "dann"
    DANNModel(DANNConfig(architecture="report")).save_pretrained(folder)
    assert remote_code.stale_code(folder) == []
    (folder / "modeling_dann.py").write_text("# edited by hand\n")
    assert remote_code.stale_code(folder) == ["modeling_dann.py"]
    assert remote_code.sync_code(folder) == ["modeling_dann.py"] and remote_code.stale_code(folder) == []


def test_save_pretrained_writes_a_folder_that_loads_with_the_library_route(tmp_path):
    pipe = DDIMFromNoisePipeline.from_unet(tiny_unet(channels=1), "course")
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_ddim_from_noise", "DDIMFromNoisePipeline"] and index["float64_betas"]
    source = Path(remote_code.source_file("pipeline_ddim_from_noise"))
    assert (tmp_path / "pipeline_ddim_from_noise.py").read_bytes() == source.read_bytes()
    loaded = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
    loaded.set_progress_bar_config(disable=True)
    # the course preset's float64 betas survive the round trip: same images to the last bit
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    expected = pipe(noise, num_inference_steps=5, output_type="np").images
    assert np.array_equal(loaded(noise, num_inference_steps=5, output_type="np").images, expected)
    assert loaded.scheduler.alphas_cumprod.dtype == torch.float64


def test_classifier_configs_are_transformers_configs_with_digit_labels(tmp_path):
    DANNModel(DANNConfig(architecture="report")).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["temperature"] == 1.0 and config["model_type"] == "dann"
    assert config["auto_map"]["AutoModelForImageClassification"] == "modeling_dann.DANNModel"
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["image_size"] == 28
    with pytest.raises(ValueError, match="temperature"):
        DANNConfig(temperature=0.0)


def test_shipped_cards_carry_metadata_measured_numbers_and_both_snippets():
    dann = json.loads((HUB_CARDS / "dann-mnistm-usps" / "metrics.json").read_text())
    classifier = json.loads((HUB_CARDS / "mnistm-digit-classifier" / "eval_results.json").read_text())
    expected = {
        "dann-mnistm-usps": ("transformers", "image-classification", round(dann["target_val_accuracy"], 4)),
        "mnistm-digit-classifier": ("transformers", "image-classification", round(classifier["accuracy"], 4)),
        "ddpm-lfw-faces": ("diffusers", "unconditional-image-generation", None),
    }
    for name, (library, task, value) in expected.items():
        card = ModelCard.load(HUB_CARDS / name / "README.md")
        assert (card.data.library_name, card.data.pipeline_tag) == (library, task)
        assert all(dataset in DATASET_IDS.values() for dataset in card.data.datasets or [])
        values = {result.metric_type: result.metric_value for result in card.data.eval_results}
        if value is not None:
            assert values["accuracy"] == value
        else:
            assert values["mse"] == 0.0  # the folder's DDIM reproduces its GT/ images
        assert "trust_remote_code=True" in card.text and "from pipelines import" in card.text


def classifier_data(name: str, results=()):
    return card_data(
        library_name="transformers",
        pipeline_tag="image-classification",
        datasets=["flwrlabs/usps"],
        model_name=name,
        eval_results=list(results),
        tags=[],
        metrics=["accuracy"],
    )


def write_card(folder: Path) -> None:
    save_card(build_card(classifier_data("x"), "# x\n"), folder)


def test_a_refreshed_card_gets_new_metadata_and_use_section_and_keeps_the_rest(tmp_path):
    body = "# Model\n\nIntro.\n\n## Use\n\nold snippet\n\n## Training\n\nkept\n"
    assert save_card(build_card(classifier_data("x"), body), tmp_path) == tmp_path / "README.md"
    refresh_card(tmp_path, classifier_data("y", [accuracy_result("usps", "validation", 0.51234)]), "## Use\n\nnew\n")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.model_name == "y" and card.data.eval_results[0].metric_value == 0.5123
    assert card.data.eval_results[0].dataset_type == DATASET_IDS["usps"]
    text = card.text
    assert "Intro." in text and "new" in text and "old snippet" not in text
    assert text.index("## Use") < text.index("## Training") < text.index("kept")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]  # written whole, no temporary left
    with pytest.raises(FileNotFoundError, match="no README.md card to refresh"):
        refresh_card(tmp_path / "none", classifier_data("z"), "## Use\n")


def test_dry_run_lists_exactly_the_files_that_would_go_up(tmp_path, capsys):
    listed = publish.main(publish.parse_args(["dann-mnistm-usps", "--repo_id", "me/dann", "--dry_run"]))
    assert listed == sorted(
        [
            "README.md",
            "config.json",
            "configuration_dann.py",
            "image_processing_digits.py",
            "metrics.json",
            "model.safetensors",
            "modeling_dann.py",
            "preprocessor_config.json",
            "pretrained_helpers.py",
        ]
    )
    assert capsys.readouterr().out.splitlines()[:-1] == listed

    output = tmp_path / "run"  # a training output: checkpoints and hidden files stay local, the noise goes up
    DANNModel(DANNConfig(architecture="report")).save_pretrained(output)
    write_card(output)
    (output / "checkpoint-3").mkdir()
    torch.save({"step": torch.tensor(3)}, output / "checkpoint-3" / "optimizer.bin")
    (output / ".tmp-staging").write_text("")
    (output / "noise").mkdir()
    torch.save(torch.randn(1, 1, 4, 4), output / "noise" / "00.pt")
    files = publish.files_to_upload(output)
    assert "noise/00.pt" in files and not any("checkpoint" in f or f.startswith(".") for f in files)


def test_publisher_refuses_folders_without_card_or_with_pickled_weights(tmp_path, capsys):
    folder = tmp_path / "model"
    DANNModel(DANNConfig(architecture="report")).save_pretrained(folder)
    with pytest.raises(SystemExit) as exit_info:
        publish.cli([str(folder), "--repo_id", "me/x", "--dry_run"])
    assert exit_info.value.code == 2 and "no README.md" in capsys.readouterr().err
    write_card(folder)
    torch.save(DANNModel(DANNConfig(architecture="report")).state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pickled weights or data \(pytorch_model.bin: a zip archive"):
        publish.files_to_upload(folder)


def test_offline_push_fails_in_one_line_and_changes_nothing(tmp_path):
    folder = tmp_path / "model"
    DANNModel(DANNConfig(architecture="report")).save_pretrained(folder)
    write_card(folder)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.hub", str(folder), "--repo_id", "me/x", "--private"],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: cannot reach the Hub") and done.stderr.count("\n") == 1
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_decode_digits_and_pipeline_preprocessing_agree(digit_images, shared_data):
    """The image processor saved beside the models is the training preprocessing, bit for bit."""
    from pipelines.digit_classifier.image_processing_digits import DigitImageProcessor

    dataset = load_digits("usps", shared_data / "usps", "validation").select(range(30))
    decoded, _ = decode_digits(dataset, cache=False)
    processed = DigitImageProcessor()([row["image"] for row in dataset])["pixel_values"]
    assert torch.equal(processed, decoded.float().div(127.5).sub(1.0))
