"""The console scripts of setup.cfg: each is a command's `cli`, the same as its `python -m` form, listed in the
README, and exits 0 when it succeeds. `.ci/run` runs the main ones from a wheel installed in a fresh environment."""

import ast
import configparser
import importlib.util
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipelines.digit_classifier import score

REPO = Path(__file__).resolve().parents[1]


def console_scripts() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(line.replace(" ", "").split("=") for line in lines)


def python_m_form(module: str) -> str:
    """The module `python -m` runs for a command: its package when the package's __main__ calls its cli."""
    package = module.rpartition(".")[0]
    main = Path(importlib.util.find_spec(package).submodule_search_locations[0]) / "__main__.py"
    return package if main.is_file() and f"from {module} import cli" in main.read_text() else module


def test_every_console_script_is_listed_in_the_readme_beside_its_python_m_form():
    scripts = console_scripts()
    assert len(scripts) == 8
    readme = (REPO / "README.md").read_text()
    for name, target in scripts.items():
        module, function = target.split(":")
        assert function == "cli", name
        assert f"| `{name}` | `python -m {python_m_form(module)}` |" in readme, name


def test_no_console_script_returns_a_value():
    # setuptools' wrapper runs sys.exit(cli()): a returned list or dict is printed and the exit status is 1
    for name, target in console_scripts().items():
        module = target.split(":")[0]
        tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
        cli = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "cli")
        returns = [node for node in ast.walk(cli) if isinstance(node, ast.Return) and node.value is not None]
        assert not returns, f"{name}: {module}.cli returns a value"


def test_score_digits_exits_0_as_its_console_script_does(tmp_path, capsys):
    for digit in range(3):
        Image.new("RGB", (28, 28), (digit * 80, 0, 0)).save(tmp_path / f"{digit}_001.png")
    with pytest.raises(SystemExit) as exit_info:
        sys.exit(score.cli(["--images", str(tmp_path), "--json", str(tmp_path / "report" / "score.json")]))
    assert exit_info.value.code is None  # status 0
    assert "3 images" in capsys.readouterr().out and (tmp_path / "report" / "score.json").is_file()
