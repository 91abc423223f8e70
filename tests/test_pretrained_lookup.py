"""The one lookup of a model argument: a path that exists wins; else a shipped folder's name; else a Hub id.

Every command resolves its model arguments through `pipelines.command_line.resolve_pretrained`, built on
`hub_cards.path`, so that the installed commands work from any working folder (issue 22, item 3).
"""

import pytest

import hub_cards
from pipelines.command_line import resolve_pretrained
from pipelines.conditional_ddpm import course_output
from pipelines.conditional_ddpm import figures as cfg_figures
from pipelines.ddim_from_noise import figures as ddim_figures
from training.report import reproduce

MODELS = [
    "cfg-mnistm",
    "cfg-mnistm-fast",
    "cfg-mnistm-small",
    "dann-mnistm-usps",
    "ddpm-lfw-faces",
    "mnistm-digit-classifier",
]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working folder outside the repository, as a user of the installed package has."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_shipped_names_are_the_folders_with_a_card():
    assert set(MODELS) | {"mnistm-mini", "usps-mini"} == set(hub_cards.names())
    for name in hub_cards.names():
        assert (hub_cards.path(name) / "README.md").is_file()
    with pytest.raises(FileNotFoundError, match="shipped: cfg-mnistm, cfg-mnistm-fast, cfg-mnistm-small"):
        hub_cards.path("cfg-mnist")
    with pytest.raises(FileNotFoundError, match="no shipped folder '../training'"):
        hub_cards.path("../training")  # a folder beside the cards is not one of them


def test_a_shipped_name_resolves_from_any_folder(elsewhere):
    for name in MODELS:
        assert resolve_pretrained(name) == str(hub_cards.path(name))
        assert resolve_pretrained(name, hub=False) == str(hub_cards.path(name))


def test_an_existing_path_wins_over_a_shipped_name(elsewhere):
    (elsewhere / "cfg-mnistm").mkdir()  # e.g. a model the user trained into ./cfg-mnistm
    assert resolve_pretrained("cfg-mnistm") == "cfg-mnistm"
    assert resolve_pretrained(elsewhere / "cfg-mnistm") == str(elsewhere / "cfg-mnistm")
    (elsewhere / "weights.safetensors").write_text("")
    with pytest.raises(NotADirectoryError, match="weights.safetensors is a file; give the model's folder"):
        resolve_pretrained("weights.safetensors")


def test_else_a_hub_id_when_the_command_reads_the_hub_and_the_hub_is_reachable(elsewhere, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    assert resolve_pretrained("owner/model") == "owner/model"  # left to the library to download
    with pytest.raises(FileNotFoundError, match="--classifier folder owner/model does not exist and names no shipped"):
        resolve_pretrained("owner/model", "--classifier", hub=False)
    with pytest.raises(FileNotFoundError, match=r"--pretrained folder nope does not exist .*cfg-mnistm, "):
        resolve_pretrained("nope")  # neither a path, nor a shipped name, nor of the owner/name form
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE is set"):
        resolve_pretrained("owner/model")


def test_commands_default_to_the_shipped_models_from_any_folder(elsewhere):
    args = course_output.parse_args(["--output_dir", str(elsewhere / "out")])
    assert args.pretrained == str(hub_cards.path("cfg-mnistm"))
    args = cfg_figures.parse_args(["--pretrained", "cfg-mnistm-small", "--output_dir", "figures"])
    assert args.pretrained == str(hub_cards.path("cfg-mnistm-small"))
    # the face model's own noises are the default --noise_dir
    args = ddim_figures.parse_args(["--pretrained", "ddpm-lfw-faces", "--output_dir", "figures"])
    assert args.noise_dir == str(hub_cards.path("ddpm-lfw-faces") / "noise")
    args = reproduce.parse_args(["--device", "cpu"])
    assert (args.cfg_pretrained, args.classifier, args.faces_pretrained) == tuple(
        str(hub_cards.path(name)) for name in ("cfg-mnistm", "mnistm-digit-classifier", "ddpm-lfw-faces")
    )
    assert args.gt_dir == str(hub_cards.path("ddpm-lfw-faces") / "GT")
    assert not (elsewhere / "out").exists() and not (elsewhere / "figures").exists()
