"""checkpoint-N folders that resume a run exactly: written whole, chosen only when complete, read without pickle.

Every training script saves its state here rather than with accelerate's save_state, whose files are pickles
(optimizer.bin, scheduler.bin, random_states_*.pkl, custom_checkpoint_*.pkl) that load_state unpickles: a
crafted checkpoint would run code. A checkpoint folder holds

    NAME.safetensors      the tensors of each state entry (weights, optimizer moments, EMA, generator states)
    NAME.json             the rest of that entry (hyperparameters, schedule, step, history), with the places of
                          its tensors marked, so the entry is rebuilt exactly (tuples, integer keys included)
    checkpoint.json       written last: the step, the run it belongs to, and the size and SHA-256 of each file

N counts what the run has done (optimizer steps, or epochs for train_dann.py): exact resume replays from N on.
A checkpoint is written into `.checkpoint-N.partial` beside its final name and renamed to `checkpoint-N` only
once complete, so a killed save leaves no `checkpoint-N`. `latest` is the newest complete checkpoint of the same
run: a checkpoint-N folder without a record (an interrupted save of other code, an empty folder) or of another
run is skipped with a warning; a complete one whose files no longer match its record is an error, because it
was damaged after it was written. Pruning to `--checkpoints_total_limit` deletes only complete checkpoints of
this run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from training.run_folder import differences

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
MANIFEST = "checkpoint.json"
TENSOR, TUPLE, ITEMS = "__tensor__", "__tuple__", "__items__"


# -- one state entry (a state_dict, a record) <-> tensors + JSON -------------------------------------------------


def _split(value, tensors: dict, path: str):
    if isinstance(value, torch.Tensor):
        if path in tensors:
            raise ValueError(f"two tensors of a checkpoint entry share the name {path!r}")
        tensors[path] = value.detach().to("cpu").contiguous().clone()
        return {TENSOR: path}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: _split(item, tensors, f"{path}.{key}") for key, item in value.items()}
        return {ITEMS: [[key, _split(item, tensors, f"{path}.{key}")] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {TUPLE: [_split(item, tensors, f"{path}.{i}") for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [_split(item, tensors, f"{path}.{i}") for i, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a checkpoint cannot hold {type(value).__name__} (at {path})")


def _join(skeleton, tensors: dict, where: Path):
    if isinstance(skeleton, list):
        return [_join(item, tensors, where) for item in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if TENSOR in skeleton:
        if skeleton[TENSOR] not in tensors:
            raise ValueError(f"{where} names a tensor {skeleton[TENSOR]!r} that its .safetensors file lacks")
        return tensors[skeleton[TENSOR]]
    if TUPLE in skeleton:
        return tuple(_join(item, tensors, where) for item in skeleton[TUPLE])
    if ITEMS in skeleton:
        return {key: _join(item, tensors, where) for key, item in skeleton[ITEMS]}
    return {key: _join(item, tensors, where) for key, item in skeleton.items()}


def write_entry(folder: Path, name: str, value) -> None:
    """`value` (nested dicts, lists, tuples, numbers, strings, tensors) as NAME.safetensors + NAME.json."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(value, tensors, name)
    if tensors:
        save_file(tensors, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps(skeleton) + "\n")


def read_entry(folder: Path, name: str):
    """The value `write_entry` stored; tensors on the CPU. Nothing is unpickled."""
    skeleton_path, tensor_path = folder / f"{name}.json", folder / f"{name}.safetensors"
    if not skeleton_path.is_file():
        raise FileNotFoundError(f"checkpoint {folder} has no {skeleton_path.name}: not written by this training code")
    try:
        skeleton = json.loads(skeleton_path.read_text())
        tensors = load_file(str(tensor_path)) if tensor_path.is_file() else {}
    except (ValueError, UnicodeDecodeError, SafetensorError) as error:
        raise ValueError(f"checkpoint file {skeleton_path} or {tensor_path.name} is unreadable ({error})") from error
    return _join(skeleton, tensors, skeleton_path)


# -- the generators of one process ----------------------------------------------------------------------------------


def generator_states() -> dict:
    """The global generators a training step may draw from (dropout, augmentation): python, numpy, torch, CUDA."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (kind, keys.tolist(), position, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_generator_states(states: dict) -> None:
    random.setstate(states["python"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# -- finding checkpoints ---------------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: Path) -> dict | None:
    """The checkpoint's record, or None when it has none (its save did not finish)."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return None
    try:
        record = json.loads(manifest.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("files"), dict) or "run" not in record:
            raise ValueError("no 'files' and 'run'")
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"checkpoint {path} is damaged: {MANIFEST} is unreadable ({error})") from error
    return record


def verify(path: Path, identity: dict, hashes: bool = True) -> dict:
    """The manifest of a complete, undamaged checkpoint of this run; a user error naming what is wrong otherwise."""
    record = read_manifest(path)
    if record is None:
        raise ValueError(f"{path} is not a complete checkpoint (no {MANIFEST}: its save was interrupted)")
    if record["run"] != identity:
        raise ValueError(f"checkpoint {path} belongs to another run ({differences(record['run'], identity)})")
    for name, expected in record["files"].items():
        file = path / name
        if not file.is_file():
            raise ValueError(f"checkpoint {path} is damaged: {name} is missing")
        size = file.stat().st_size
        if size != expected["bytes"]:
            raise ValueError(
                f"checkpoint {path} is damaged: {name} has {size} bytes, its record says {expected['bytes']} "
                "(truncated?); delete it or resume from another"
            )
        if hashes and file_sha256(file) != expected["sha256"]:
            raise ValueError(f"checkpoint {path} is damaged: {name} differs from its record (SHA-256)")
    return record


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Every checkpoint-N folder under `root`, oldest first, complete or not."""
    if not Path(root).is_dir():
        return []
    found = [(int(m.group(1)), p) for p in Path(root).iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return sorted(found)


def is_checkpoint_of(path: Path, identity: dict) -> bool:
    """Whether `path` is a checkpoint-N folder with a record of this run (its files are not checked)."""
    try:
        record = read_manifest(path) if path.is_dir() and CHECKPOINT_PATTERN.match(path.name) else None
    except ValueError:
        return False
    return record is not None and record["run"] == identity


def complete_checkpoints(root: Path, identity: dict, warn: bool = False) -> list[tuple[int, Path]]:
    """The checkpoint-N folders with a record of this run, oldest first (files checked by size only)."""
    complete = []
    for step, path in list_checkpoints(root):
        record = read_manifest(path) if path.is_dir() else None
        if record is None or record["run"] != identity:
            if warn:
                why = "no record: an interrupted save" if record is None else "of another run"
                logger.warning(f"skipping {path} ({why})")
            continue
        complete.append((step, path))
    return complete


def find_checkpoint(resume: str | None, root: Path, identity: dict) -> tuple[int, Path] | None:
    """What `--resume_from_checkpoint` names, verified: 'latest' -> the newest complete checkpoint of this run in
    `root` (None when there is none yet), a path -> that checkpoint-N folder. Checked before any training work."""
    if resume is None:
        return None
    if resume == "latest":
        complete = complete_checkpoints(root, identity, warn=True)
        if not complete:
            return None
        step, path = complete[-1]
    else:
        path = Path(resume)
        match = CHECKPOINT_PATTERN.match(path.name)
        if not path.is_dir() or not match:
            raise FileNotFoundError(f"--resume_from_checkpoint {resume!r} is not a checkpoint-N folder")
        step = int(match.group(1))
    verify(path, identity)
    return step, path


# -- writing ---------------------------------------------------------------------------------------------------------


def save_checkpoint(
    accelerator,
    root: Path,
    step: int,
    identity: dict,
    entries: Callable[[], dict],
    total_limit: int | None,
) -> Path:
    """Write `checkpoint-N` under `root` on every process, whole (see the module docstring), then prune.

    `entries()` is called on the main process: {name: state}. Each process adds `generators-<index>`.
    """
    root = Path(root)
    final, partial = root / f"checkpoint-{step}", root / f".checkpoint-{step}.partial"
    if accelerator.is_main_process:
        for stale in [*root.glob(".checkpoint-*.partial"), *root.glob(".checkpoint-*.retired")]:
            shutil.rmtree(stale)  # this run's saves or deletions that a kill interrupted
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    write_entry(partial, f"generators-{accelerator.process_index}", generator_states())
    if accelerator.is_main_process:
        for name, value in entries().items():
            write_entry(partial, name, value)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        files = sorted(p for p in partial.rglob("*") if p.is_file())
        record = {
            "step": step,
            "run": identity,
            "files": {
                str(p.relative_to(partial)): {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files
            },
        }
        (partial / MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
        for path in [*files, partial / MANIFEST]:
            _fsync(path)
        if final.exists():  # this step saved again: by a repeated run, or after a save that was interrupted
            _check_replaceable(final, identity)
            _delete(final)
        os.replace(partial, final)
        _fsync(root)
        if total_limit is not None:
            complete = complete_checkpoints(root, identity)
            for _, old in complete[: max(0, len(complete) - total_limit)]:
                _delete(old)
    accelerator.wait_for_everyone()
    return final


def _check_replaceable(path: Path, identity: dict) -> None:
    """A checkpoint-N folder may be replaced by this run's checkpoint-N if it is this run's or has no record."""
    record = read_manifest(path) if path.is_dir() else {"run": "not a folder"}
    if record is not None and record["run"] != identity:
        raise FileExistsError(f"{path} is not a checkpoint of this run; move it away to let the run save its step")


def _delete(path: Path) -> None:
    """Rename a checkpoint out of its name first, so that a kill while deleting leaves no half of a checkpoint-N."""
    retired = path.with_name(f".{path.name}.retired")
    os.replace(path, retired)
    shutil.rmtree(retired)


def _fsync(path: Path) -> None:
    """Flush `path` to disk, so that a crash after the rename cannot leave a complete name on missing data."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def optimization_entries(accelerator, model, optimizer, lr_scheduler) -> dict:
    """The state every script saves: weights of the (unwrapped) model, optimizer, schedule, gradient scaler."""
    entries = {
        "model": accelerator.unwrap_model(model, keep_torch_compile=False).state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
    }
    if accelerator.scaler is not None:  # fp16 mixed precision
        entries["grad_scaler"] = accelerator.scaler.state_dict()
    return entries


def load_optimization_entries(accelerator, path: Path, model, optimizer, lr_scheduler) -> None:
    """Restore what `optimization_entries` saved, and this process's generators."""
    load_weights(accelerator.unwrap_model(model, keep_torch_compile=False), path, "model")
    optimizer.load_state_dict(read_entry(path, "optimizer"))
    lr_scheduler.load_state_dict(read_entry(path, "lr_scheduler"))
    if accelerator.scaler is not None and (path / "grad_scaler.json").is_file():
        accelerator.scaler.load_state_dict(read_entry(path, "grad_scaler"))
    load_generator_states(accelerator, path)


def load_weights(module, path: Path, name: str) -> None:
    """`module.load_state_dict` from the checkpoint's entry `name`; weights that do not fit are one user error."""
    try:
        module.load_state_dict(read_entry(path, name))
    except (RuntimeError, TypeError, AttributeError) as error:  # torch names the first tensors that do not fit
        raise ValueError(f"checkpoint {path}: {name} does not fit ({' '.join(str(error).split())[:300]})") from error


def load_generator_states(accelerator, path: Path) -> None:
    """Restore this process's generators from a checkpoint (a process count that changed keeps the fresh ones)."""
    name = f"generators-{accelerator.process_index}"
    if (path / f"{name}.json").is_file():
        try:
            restore_generator_states(read_entry(path, name))
        except (RuntimeError, TypeError, KeyError) as error:
            raise ValueError(f"checkpoint {path}: {name} is not a generator state ({error})") from error
    else:
        logger.warning(f"{path} has no generator state for process {accelerator.process_index}; keeping the seed's")
