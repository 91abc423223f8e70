"""Write a whole output folder or nothing: the one way this project publishes models, images and reports.

Everything is written into a hidden staging folder next to the destination and swapped in with renames,
so a crash never pairs a new `config.json` with old weights, and a rerun never leaves stale files from an
earlier, larger run beside the new ones.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def check_output_dir(output_dir: os.PathLike, overwrite: bool) -> Path:
    """Refuse a non-empty `output_dir` unless `overwrite`: call before any work, so a refusal costs nothing."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"output folder {output_dir} is a file")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"output folder {output_dir} is not empty: choose another one or pass --overwrite")
    return output_dir


def write_file_atomically(path: os.PathLike, write: Callable[[Path], object]):
    """Run `write(temporary)` on a hidden file beside `path`, then rename it to `path`; returns what `write` returned.

    The temporary name keeps `path`'s suffix (savefig and torch.save pick the format from it), and it is
    removed if `write` raises, so `path` is either the old file or the whole new one, never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        result = write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return result


def write_text_atomically(path: os.PathLike, text: str) -> None:
    """`path.write_text(text)`, all or nothing."""
    write_file_atomically(path, lambda temporary: temporary.write_text(text))


def write_folder_atomically(output_dir: os.PathLike, write: Callable[[Path], object]):
    """Run `write(staging)`, then replace `output_dir` by `staging` whole; returns what `write` returned.

    If `write` raises, the staging folder is removed and `output_dir` is left as it was.
    """
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-staging-", dir=output_dir.parent))
    try:
        result = write(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if output_dir.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-retired-", dir=output_dir.parent))
        os.replace(output_dir, retired / output_dir.name)
        os.replace(staging, output_dir)
        shutil.rmtree(retired)
    else:
        os.replace(staging, output_dir)
    return result
