"""What this project wrote, recorded outside the folders it wrote, so that an output folder holds its outputs only.

A grader lists an output folder and reads every entry (the course's digit grader takes `int(name[0])` of each
name), so nothing of the project's own may sit beside the outputs: no marker, lock or record. Instead, after a
folder is written whole, `record_written` stores the name, size and modification time of every entry in a small
JSON file of the project's state folder (`$GUIDED_DIFFUSION_DA_STATE_DIR`, else `$XDG_STATE_HOME/guided-diffusion-da`,
else `~/.local/state/guided-diffusion-da`), keyed by the folder's resolved path. `foreign_entries` compares a
folder against that record: an entry that is not in it, or whose size or time changed, was put there by someone
else, and `--overwrite` refuses to replace a folder that holds one.

This is stricter than a marker file: a user's `notes.txt` dropped into a folder the project wrote is named and kept,
and a folder moved or copied elsewhere is no longer taken for the project's (its path has no record), so it is
refused rather than replaced. The write locks live in the same state folder (`lock_path`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

STATE_DIR_ENV = "GUIDED_DIFFUSION_DA_STATE_DIR"
LEGACY_MARKER = ".written-by-guided-diffusion-da"
"""The file earlier releases left inside their output folders; a folder holding it was written by the project."""


def state_dir() -> Path:
    """The project's own state folder (records and locks), made on first use; a private temporary folder where the
    home folder cannot be written (a read-only home in a container)."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        folder = Path(explicit).expanduser()
    else:
        base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        folder = Path(base) / "guided-diffusion-da"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK | os.X_OK):
            return folder
    except OSError:
        if explicit:
            raise
    if explicit:
        raise PermissionError(f"${STATE_DIR_ENV} {folder} cannot be written")
    fallback = Path(tempfile.gettempdir()) / f"guided-diffusion-da-{os.getuid()}"
    fallback.mkdir(mode=0o700, exist_ok=True)
    return fallback


def _key(folder: Path) -> str:
    return hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:32]


def lock_path(folder: os.PathLike) -> Path:
    """The file whose `flock` is `folder`'s write lock: in the state folder, never beside or inside `folder`."""
    locks = state_dir() / "locks"
    locks.mkdir(exist_ok=True)
    return locks / f"{_key(Path(folder))}.lock"


def _record_path(folder: Path) -> Path:
    return state_dir() / "written" / f"{_key(folder)}.json"


def snapshot(folder: os.PathLike) -> dict[str, list]:
    """Every entry under `folder` (relative POSIX path -> what identifies it): files by size and modification time
    in nanoseconds, links by target, folders by presence. Links are not followed."""
    folder = Path(folder)
    entries: dict[str, list] = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            relative = path.relative_to(folder).as_posix()
            info = path.lstat()
            if path.is_symlink():
                entries[relative] = ["link", os.readlink(path)]
            elif path.is_dir():
                entries[relative] = ["dir"]
            else:
                entries[relative] = ["file", info.st_size, info.st_mtime_ns]
    return entries


def record_written(folder: os.PathLike) -> None:
    """Record every entry now under `folder` as the project's (call once the folder is whole, under its lock)."""
    folder = Path(folder).resolve()
    path = _record_path(folder)
    path.parent.mkdir(exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".record-", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump({"folder": str(folder), "entries": snapshot(folder)}, stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _recorded_entries(folder: Path) -> dict[str, list] | None:
    try:
        record = json.loads(_record_path(folder).read_text())
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None  # no record, or a damaged one: nothing is known to be ours
    if not isinstance(record, dict) or record.get("folder") != str(folder):
        return None
    if not isinstance(record.get("entries"), dict):
        return None
    return record["entries"]


def foreign_entries(folder: os.PathLike, recorded_as: os.PathLike | None = None) -> list[str]:
    """The entries under `folder` that the project did not write there (sorted relative paths); [] when all are
    the project's. `recorded_as`: the path whose record applies, when `folder` has been moved aside to be replaced.
    A folder with the marker of an earlier release counts as the project's."""
    folder = Path(folder)
    if (folder / LEGACY_MARKER).is_file():
        return []
    recorded = _recorded_entries(Path(recorded_as or folder).resolve()) or {}
    return sorted(name for name, identity in snapshot(folder).items() if recorded.get(name) != identity)
