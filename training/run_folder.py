"""Which run a training folder belongs to, and publishing into it without touching what is not ours.

A training script owns the folders it writes (`--output_dir`, and the classifier's `--project_dir`) only for
one run: the first run that writes into a folder leaves `.training_run.json` there, naming the script and the
flags that define the run. A later run into that folder must have the same defining flags (then it continues or
repeats that run); otherwise it is refused before any work, so it can neither overwrite that run's export nor
resume its checkpoints. Flags a run may change without becoming another run (where it is written, how long it
runs, how often it saves, logs or evaluates, how fast it computes) are listed by each script.

Files of anyone else in the folder (a `thesis.tex`, an `other_run/`) are never deleted: a folder without a
record is refused only when it holds a name the run would write; otherwise the run keeps its files beside its
own, and `publish` carries them over when it swaps the exported folder in.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from adapters.folders import hold_output_lock, write_folder_atomically, write_text_atomically

RUN_RECORD = ".training_run.json"


def _plain(value):
    """A flag's value as JSON records it (paths as strings, tuples as lists)."""
    return json.loads(json.dumps(value, default=str))


def run_identity(args, free_flags: Iterable[str]) -> dict:
    """The flags that define a run: every parsed flag but `free_flags`, as JSON values."""
    free = set(free_flags)
    return {name: _plain(value) for name, value in sorted(vars(args).items()) if name not in free}


def differences(recorded: dict, current: dict) -> str:
    """'--a 1 (recorded) vs 2 (now), ...' for the flags whose values differ, or '' when none do."""
    names = sorted(set(recorded) | set(current))
    was, now = ({n: values.get(n, "<absent>") for n in names} for values in (recorded, current))
    return ", ".join(f"--{n} {was[n]} (recorded) vs {now[n]} (now)" for n in names if was[n] != now[n])


def read_run_record(folder: Path) -> dict | None:
    """The folder's run record, None when it has none; a record that is not one is a user error."""
    path = Path(folder) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("run"), dict):
            raise ValueError("no 'run' object")
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not a training run record ({error}); move it away or choose another folder"
        ) from error
    return record


def check_run_folder(
    folder: Path,
    script: str,
    identity: dict,
    output_names: Iterable[str],
    option: str,
    is_ours: Callable[[Path], bool] = lambda path: False,
) -> None:
    """Refuse `folder` (the value of `option`) unless this run may write into it; see the module docstring.

    `output_names`: glob patterns of the top-level names the run writes there. `is_ours(path)`: whether an entry
    of a folder without a record was written by this same run anyway (a checkpoint of this run copied there).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{option} {folder} is a file, not a folder")
    if not folder.is_dir():
        return
    record = read_run_record(folder)
    if record is not None:
        if record.get("script") != script or record["run"] != identity:
            changed = differences(record["run"], identity) if record.get("script") == script else ""
            raise FileExistsError(
                f"{option} {folder} holds another run (of {record.get('script')}"
                + (f"; {changed}" if changed else "")
                + "): choose another folder, or repeat that run's flags to continue it"
            )
        return
    taken = sorted(
        p.name
        for p in folder.iterdir()
        if any(fnmatch.fnmatch(p.name, pattern) for pattern in output_names) and not is_ours(p)
    )
    if taken:
        raise FileExistsError(
            f"{option} {folder} holds {', '.join(taken[:6])}{' ...' if len(taken) > 6 else ''}, which this run "
            "would write, and no record that this run wrote them: choose another folder"
        )


def write_run_record(folder: Path, script: str, identity: dict, args) -> None:
    """Mark `folder` as this run's (main process, after `check_run_folder`, before any training work).

    The folder's write lock is taken first and held until the export or the end of the process, so a second run
    started into the same folder meanwhile is refused instead of interleaving checkpoints with this one.
    """
    hold_output_lock(folder)
    record = {"script": script, "run": identity, "args": {k: _plain(v) for k, v in sorted(vars(args).items())}}
    write_text_atomically(Path(folder) / RUN_RECORD, json.dumps(record, indent=2) + "\n")


def _carry(source: Path, target: Path) -> None:
    """`source` into `target` without copying data: hard links (a copy where links fail), links kept as links."""

    def link_or_copy(src, dst):
        try:
            os.link(src, dst, follow_symlinks=False)
        except OSError:  # a filesystem without hard links
            shutil.copy2(src, dst, follow_symlinks=False)

    if source.is_symlink():
        os.symlink(os.readlink(source), target)
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True, copy_function=link_or_copy)
    else:
        link_or_copy(source, target)


def publish(output_dir: Path, write_export: Callable[[Path], None]) -> None:
    """Replace `output_dir` whole by a staged folder holding the new export and every other entry of the old one.

    `write_export(staging)` writes the export; the names it writes replace the old ones of the same name
    (`check_run_folder` made sure they were this run's), and everything else (checkpoints, logs, anyone's files)
    is hard-linked into the staging folder, so the originals stay intact until the rename and nothing is lost.
    """
    output_dir = Path(output_dir)

    def write(staging: Path) -> None:
        write_export(staging)
        exported = {p.name for p in staging.iterdir()}
        for entry in sorted(output_dir.iterdir()) if output_dir.is_dir() else []:
            if entry.name not in exported:
                _carry(entry, staging / entry.name)

    write_folder_atomically(output_dir, write, replace_unmarked=True)  # `write` carries every other entry over
