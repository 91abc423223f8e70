"""The Space files (space/README.md, space/requirements.txt) agree with the project: the Hub reads the front
matter as a Gradio Space running app.py at the pinned Gradio, and the requirements are the package's own."""

import configparser
import re
from pathlib import Path

from huggingface_hub import SpaceCard

REPO_ROOT = Path(__file__).resolve().parents[1]


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    return config


def requirement_names(lines) -> dict[str, str]:
    """{normalised name: the whole requirement} of requirement lines (comments and pip options skipped)."""
    names = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith(("#", "-")):
            name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]
            names[name.lower().replace("_", "-")] = line
    return names


def test_the_front_matter_is_a_gradio_space_running_app_py_at_the_pinned_gradio():
    card = SpaceCard.load(REPO_ROOT / "space" / "README.md")
    demo_extra = requirement_names(setup_cfg()["options.extras_require"]["demo"].splitlines())
    assert card.data.sdk == "gradio"
    assert card.data.app_file == "app.py" and (REPO_ROOT / card.data.app_file).is_file()
    assert demo_extra["gradio"] == f"gradio=={card.data.sdk_version}"
    assert len(card.data.short_description) <= 60  # the Hub refuses longer ones


def test_the_space_installs_what_the_package_needs():
    package = requirement_names(setup_cfg()["options"]["install_requires"].splitlines())
    space = requirement_names((REPO_ROOT / "space" / "requirements.txt").read_text().splitlines())
    assert set(space) == set(package)
    assert space["torch"] == "torch==2.13.0+cpu"  # the version the README's install command pins, CPU build
    assert all(space[name] == package[name] for name in package if name != "torch")
