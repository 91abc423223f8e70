"""The code a shipped folder carries for `trust_remote_code`, kept equal to the package's source.

A folder names its code itself: a diffusers folder in model_index.json (`"_class_name": [module, class]`), a
transformers folder in the `auto_map` of config.json / preprocessor_config.json (`"module.Class"`). Each of those
modules is a file of this package that imports only the libraries and its sibling files (`from .name import ...`,
which the libraries copy along), copied verbatim into the folder together with those siblings.

    python -m pipelines.hub.remote_code hub_cards/cfg-mnistm ...          # copy the current source in
    python -m pipelines.hub.remote_code --check hub_cards/*/              # exit 2 naming any stale copy
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import shutil
from pathlib import Path

from pipelines.command_line import run_command

# module name inside a model folder -> the package module it is a copy of
CODE_MODULES = {
    "pipeline_conditional_ddpm": "pipelines.conditional_ddpm.pipeline_conditional_ddpm",
    "pipeline_ddim_from_noise": "pipelines.ddim_from_noise.pipeline_ddim_from_noise",
    "modeling_dann": "pipelines.dann.modeling_dann",
    "configuration_dann": "pipelines.dann.configuration_dann",
    "modeling_digit_classifier": "pipelines.digit_classifier.modeling_digit_classifier",
    "configuration_digit_classifier": "pipelines.digit_classifier.configuration_digit_classifier",
    "image_processing_digits": "pipelines.digit_classifier.image_processing_digits",
    "pretrained_helpers": "pipelines.digit_classifier.pretrained_helpers",
}


def source_file(module: str) -> Path:
    """The package file that a folder's `module.py` is a copy of."""
    if module not in CODE_MODULES:
        raise ValueError(f"{module}.py is not code this package ships; known: {sorted(CODE_MODULES)}")
    return Path(importlib.util.find_spec(CODE_MODULES[module]).origin)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error


def declared_modules(folder: str | Path) -> list[str]:
    """The code modules a folder's configs name, sorted; empty for a folder that needs no code of its own."""
    folder = Path(folder)
    modules = set()
    if (folder / "model_index.json").is_file():
        class_name = _read_json(folder / "model_index.json").get("_class_name")
        if isinstance(class_name, list):
            modules.add(class_name[0])
    for name in ("config.json", "preprocessor_config.json"):
        if (folder / name).is_file():
            auto_map = _read_json(folder / name).get("auto_map") or {}
            modules |= {reference.rsplit(".", 1)[0] for reference in auto_map.values() if isinstance(reference, str)}
    return sorted(modules)


def sibling_imports(module: str) -> list[str]:
    """The modules that `module`'s source imports from its own folder (`from .name import ...`), sorted."""
    tree = ast.parse(source_file(module).read_text())
    return sorted({node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1})


def required_modules(folder: str | Path) -> list[str]:
    """The declared modules and, transitively, the siblings they import: every code file the folder needs."""
    needed, pending = set(), declared_modules(folder)
    while pending:
        module = pending.pop()
        if module not in needed:
            needed.add(module)
            pending += sibling_imports(module)
    return sorted(needed)


def stale_code(folder: str | Path) -> list[str]:
    """File names of the folder's code (`required_modules`) that are missing or differ from the package's source."""
    folder = Path(folder)
    return [
        f"{module}.py"
        for module in required_modules(folder)
        if not (folder / f"{module}.py").is_file()
        or (folder / f"{module}.py").read_bytes() != source_file(module).read_bytes()
    ]


def sync_code(folder: str | Path) -> list[str]:
    """Copy the package's current source of every declared module into the folder; returns the files rewritten."""
    folder = Path(folder)
    stale = stale_code(folder)
    for name in stale:
        shutil.copyfile(source_file(name[:-3]), folder / name)
    return stale


def attach_pipeline_code(folder: str | Path, pipeline_class: type, **config) -> None:
    """Make an existing diffusers folder load as `pipeline_class` with `trust_remote_code`: copy the class's file in
    and point model_index.json at it (`config` adds pipeline arguments, such as a DDIM preset).

    What the pipelines' own `save_pretrained` does, for folders that are not re-saved (their weights stay as
    they are).
    """
    folder = Path(folder)
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise FileNotFoundError(f"{folder} has no model_index.json: not a diffusers pipeline folder")
    module = Path(pipeline_class.__module__.replace(".", "/")).name
    source_file(module)  # only this package's self-contained pipeline files are shipped as code
    index = _read_json(index_file)
    index.update(config)
    index["_class_name"] = [module, pipeline_class.__name__]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    sync_code(folder)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="model folders (e.g. hub_cards/cfg-mnistm)")
    parser.add_argument("--check", action="store_true", help="change nothing; fail if any copy is stale")
    return parser.parse_args(argv)


def main(args) -> dict[str, list[str]]:
    for folder in args.folders:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"model folder {folder} does not exist")
    if args.check:
        stale = {folder: stale_code(folder) for folder in args.folders}
        stale = {folder: names for folder, names in stale.items() if names}
        if stale:
            raise ValueError(
                "stale code copies (run without --check to refresh): "
                + "; ".join(f"{folder}: {', '.join(names)}" for folder, names in stale.items())
            )
        print(f"code copies up to date in {len(args.folders)} folder(s)")
        return {}
    changed = {folder: sync_code(folder) for folder in args.folders}
    for folder, names in changed.items():
        print(f"{folder}: {', '.join(names) if names else 'up to date'}")
    return changed


def cli(argv=None) -> None:
    run_command(main, parse_args, argv)


if __name__ == "__main__":
    cli()
