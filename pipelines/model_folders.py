"""Check a model folder before anything loads it: the kind of model a command needs, and whole weights that fill it.

Every command that loads a model calls one of the `check_*` functions on its model argument first (after
`command_line.resolve_pretrained`), so a wrong or damaged folder is one `error:` line, a ValueError naming the
folder and what is wrong, before any work:

- its config files (`model_index.json`, `config.json`, `scheduler_config.json`) are JSON objects;
- it is the kind of model the command needs (transformers' `model_type`, diffusers' `_class_name`), and the
  message names what it is instead;
- its weights are a safetensors file that is whole (safetensors checks that header and size agree: a zero-byte
  or truncated file fails) and holds exactly the tensors, of the same shapes, of the model its config builds
  (the model is built on the `meta` device, so this allocates nothing): no weight is left at random, none is
  ignored. Pickled weights (`.bin`) are not read.

A Hub id (not a local folder) is left to the libraries to download and check.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import diffusers
import torch
from diffusers import UNet2DModel
from safetensors import SafetensorError, safe_open
from torch import nn

DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
TRANSFORMERS_WEIGHTS = "model.safetensors"


def read_json_object(path: Path) -> dict:
    """A config file as a dict; a missing, unreadable or non-object file is a ValueError naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        value = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, not an object of settings")
    return value


def check_pipeline_folder(folder: str | Path, pipeline_class: str, option: str = "--pretrained") -> None:
    """A saved diffusers pipeline of class `pipeline_class` (e.g. ConditionalDDPMPipeline) with a whole UNet."""
    folder = Path(folder)
    if not folder.is_dir():
        return  # a Hub id
    found = _class_name(folder / "model_index.json") if (folder / "model_index.json").is_file() else None
    if found != pipeline_class:
        raise _wrong_kind(folder, option, f"a {pipeline_class} folder")
    _check_pipeline_components(folder)


def check_unet_folder(folder: str | Path, option: str = "--pretrained") -> None:
    """An unconditional `UNet2DModel`: its own folder, or a pipeline folder that holds one in `unet/`."""
    folder = Path(folder)
    if not folder.is_dir():
        return  # a Hub id
    unet_folder = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    if not (unet_folder / "config.json").is_file() or _class_name(unet_folder / "config.json") != "UNet2DModel":
        raise _wrong_kind(folder, option, "a UNet2DModel folder")
    for settings in (folder / "model_index.json", folder / "scheduler" / "scheduler_config.json"):
        if settings.is_file():  # a saved pipeline's own settings are read too
            read_json_object(settings)
    _check_unet(unet_folder)
    config = read_json_object(unet_folder / "config.json")
    if config.get("num_class_embeds") or config.get("class_embed_type"):
        raise ValueError(
            f"{option} {folder} holds a class-conditional UNet2DModel (num_class_embeds "
            f"{config.get('num_class_embeds')}); this command samples unconditional models: sample it with "
            "`python -m pipelines.conditional_ddpm`"
        )


def check_transformers_folder(folder: str | Path, model_class: type, option: str = "--pretrained") -> None:
    """A folder saved by `model_class.save_pretrained` (config.json of its `model_type`, model.safetensors)."""
    folder = Path(folder)
    if not folder.is_dir():
        return  # a Hub id
    config_class = model_class.config_class
    wanted = f"a {config_class.model_type} model folder ({model_class.__name__})"
    config_path = folder / "config.json"
    config = read_json_object(config_path) if config_path.is_file() else {}
    if config.get("model_type") == config_class.model_type:
        weights = folder / TRANSFORMERS_WEIGHTS
    elif config.get("_class_name") == model_class.__name__ and (folder / DIFFUSERS_WEIGHTS).is_file():
        weights = folder / DIFFUSERS_WEIGHTS  # the same fields and weights in diffusers' layout (older folders)
    else:
        raise _wrong_kind(folder, option, wanted)
    fields = {key: value for key, value in config.items() if not key.startswith("_")}
    check_weights_fill_model(weights, lambda: model_class(config_class.from_dict(fields)), config_path)


def describe(folder: Path) -> str:
    """What a folder holds, in words, for error messages: "a dann model folder (config.json model_type)", ..."""
    for name in ("model_index.json", "config.json"):
        path = folder / name
        if not path.is_file():
            continue
        config = read_json_object(path)
        if name == "config.json" and config.get("model_type"):
            return f"a {config['model_type']} model folder (config.json model_type {config['model_type']!r})"
        if _class_name(path):
            return f"a {_class_name(path)} folder ({name})"
        return f"a folder whose {name} names no model class"
    return "not a model folder (no model_index.json or config.json)"


def _wrong_kind(folder: Path, option: str, wanted: str) -> Exception:
    message = f"{option} {folder} is {describe(folder)}, but this command needs {wanted}"
    has_config = any((folder / name).is_file() for name in ("model_index.json", "config.json"))
    return ValueError(message) if has_config else FileNotFoundError(message)


def check_weights_fill_model(weights: Path, build: Callable[[], nn.Module], config_path: Path) -> None:
    """`weights` is a whole safetensors file with exactly the tensors (names and shapes) of the model `build()`
    makes from `config_path`; a ValueError names what is missing, left over or of another shape."""
    if not weights.is_file():
        raise FileNotFoundError(
            f"{weights} is missing: the folder has no safetensors weights (pickled .bin weights are not read)"
        )
    stored = safetensors_shapes(weights)
    try:
        with torch.device("meta"):  # the model's tensors without their memory
            model = build()
    except Exception as error:  # noqa: BLE001 - any config a library cannot build a model from is the folder's fault
        raise ValueError(f"{config_path} does not describe a model that can be built ({error})") from None
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    problems = shape_misfit(expected, stored)
    if problems:
        raise ValueError(
            f"{weights} does not fill the {type(model).__name__} that {config_path.name} describes: "
            + "; ".join(problems)
        )


def shape_misfit(expected: dict[str, tuple], stored: dict[str, tuple]) -> list[str]:
    """What keeps the `stored` tensors (name -> shape) from filling a model whose tensors are `expected`: the
    missing, the left-over and the reshaped ones, each in a phrase; [] when they fit exactly."""
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    reshaped = sorted(name for name in set(expected) & set(stored) if expected[name] != stored[name])
    problems = []
    if missing:
        problems.append(f"{len(missing)} of its tensors missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} that are not part of it (e.g. {', '.join(unexpected[:3])})")
    if reshaped:
        name = reshaped[0]
        problems.append(
            f"{len(reshaped)} of another shape (e.g. {name}: {stored[name]} in the file, {expected[name]} in the model)"
        )
    return problems


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} of a safetensors file, read from its header; a damaged file is a ValueError."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise ValueError(
            f"{path} is not a whole safetensors file ({error}; size {path.stat().st_size} bytes)"
        ) from None


def _class_name(path: Path) -> str | None:
    """The class a diffusers config names: `_class_name` is "Name" or [module, "Name"]."""
    name = read_json_object(path).get("_class_name")
    if isinstance(name, list) and name:
        name = name[-1]
    return name if isinstance(name, str) else None


def _check_unet(unet_folder: Path) -> None:
    config_path = unet_folder / "config.json"
    config = read_json_object(config_path)
    check_weights_fill_model(unet_folder / DIFFUSERS_WEIGHTS, lambda: UNet2DModel.from_config(config), config_path)


def _check_pipeline_components(folder: Path) -> None:
    """The UNet and the scheduler a pipeline's model_index.json names: configs that build, whole weights."""
    index = read_json_object(folder / "model_index.json")
    for component in ("unet", "scheduler"):
        library, class_name = _entry(index, component)
        component_class = getattr(diffusers, class_name or "", None) if library == "diffusers" else None
        if component_class is None:
            raise ValueError(
                f"{folder / 'model_index.json'} names {component} = {index.get(component)}; expected a diffusers class"
            )
        if component == "unet":
            if class_name != "UNet2DModel":
                raise ValueError(f"{folder / 'model_index.json'} names a {class_name} unet; expected UNet2DModel")
            _check_unet(folder / "unet")
        else:
            config_path = folder / "scheduler" / "scheduler_config.json"
            config = read_json_object(config_path)
            try:
                component_class.from_config(config)
            except Exception as error:  # noqa: BLE001 - a scheduler config diffusers cannot build is the folder's fault
                raise ValueError(f"{config_path} does not describe a {class_name} ({error})") from None


def _entry(index: dict, component: str) -> tuple[str | None, str | None]:
    value = index.get(component)
    if isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) for part in value):
        return value[0], value[1]
    return None, None
