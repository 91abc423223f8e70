"""Write a whole output folder or nothing: the one way this project publishes models, images and reports.

Everything is written into a hidden staging folder next to the destination and swapped in with renames,
so a crash never pairs a new `config.json` with old weights, and a rerun never leaves stale files from an
earlier, larger run beside the new ones. The finished folder holds its outputs and nothing else: what the project
knows about it (that it wrote it, who is writing it now) is kept in the project's state folder
(`adapters.ownership`), so a grader that reads every entry of the folder finds only outputs.

The guarantees a user can rely on, and where each is kept:
- `check_output_dir` (called before any work) refuses a non-empty folder without `--overwrite`, refuses to
  replace a folder holding anything this project did not write there (an entry missing from the folder's record,
  or changed since), and refuses an output folder that is, holds or lies inside one of the command's inputs or
  the current folder.
- It also takes a lock (`flock` on a file of the state folder named after the folder's path) held until the write
  ends, so a second run into the same folder is refused while the first one runs instead of silently replacing its
  output; the kernel drops the lock of a killed process, so a stale lock never blocks anyone, and the next writer
  removes the staging folder a killed run left beside the destination (or puts back the old output it had moved
  aside).
- SIGTERM and SIGHUP raise like Ctrl-C while a folder is being prepared, so the staging folder and the lock
  are cleaned up as they are for a Python exception.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from adapters.ownership import foreign_entries, lock_path, record_written

_held_locks: dict[Path, int] = {}


def _resolve(path: os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _foreign_message(output_dir: Path, foreign: list[str]) -> str:
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    return f"{output_dir} holds {shown}, which this project did not write there"


def _relation(output_dir: Path, other: Path) -> str | None:
    """How `output_dir` overlaps `other` ('is', 'holds', 'lies inside'), or None when they are apart."""
    if output_dir == other:
        return "is"
    if output_dir in other.parents:
        return "holds"
    if other in output_dir.parents:
        return "lies inside"
    return None


def _check_writable_location(output_dir: Path, option: str) -> None:
    """The nearest existing ancestor must be a folder we may write in (not a file, not read-only)."""
    ancestor = output_dir.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"{option} {output_dir}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"{option} {output_dir}: no permission to write in {ancestor}")


def check_folder_location(folder: os.PathLike, option: str) -> Path:
    """Refuse an output folder that could not be made or written: a file at its path or at a parent's, a parent
    without write permission. Returns the resolved folder."""
    folder = _resolve(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{option} {folder} is a file")
    _check_writable_location(folder, option)
    return folder


def check_output_dir(
    output_dir: os.PathLike,
    overwrite: bool,
    inputs: Iterable[os.PathLike | str | None] = (),
    option: str = "--output_dir",
) -> Path:
    """Refuse an output folder that would lose someone's files; call before any work, so a refusal costs nothing.

    `inputs` are the command's input paths (model folders, noise folders, images...); values that are not local
    paths (Hub ids, None) are skipped. A non-empty output folder that is, holds or lies inside one of them is
    refused even with `overwrite`. Returns the resolved folder and holds its write lock until
    `write_folder_atomically` finishes (or the process ends).
    """
    output_dir = check_folder_location(output_dir, option)
    relation = _relation(output_dir, Path.cwd().resolve())
    if relation in ("is", "holds"):
        raise ValueError(f"{option} {output_dir} {relation} the current folder; choose a new folder for the output")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        # Only a folder with something in it can lose anything: a new folder inside an input (a model's GT/) is fine.
        for value in inputs:
            if value is None or not Path(str(value)).expanduser().exists():
                continue
            relation = _relation(output_dir, _resolve(value))
            if relation:
                raise ValueError(
                    f"{option} {output_dir} {relation} the input {value}; choose a folder apart from the inputs"
                )
        if not overwrite:
            raise FileExistsError(f"{option} {output_dir} is not empty: choose another one or pass --overwrite")
        foreign = foreign_entries(output_dir)
        if foreign:
            raise FileExistsError(
                f"{option} {_foreign_message(output_dir, foreign)}, so --overwrite will not replace it; choose "
                "another folder or empty it yourself"
            )
    hold_output_lock(output_dir)
    return output_dir


def check_output_file(path: os.PathLike, option: str, inputs: Iterable[os.PathLike | str | None] = ()) -> Path:
    """Refuse an output file that could not be written, before any work: a folder or other non-file at `path`, a
    file where a parent folder should be, a folder without write permission, and a file that is one of the
    command's `inputs` or lies inside one (it would replace an image being read, or add an entry to the folder
    a grader reads; deeper down is apart: no command or grader reads sub-folders). Values of `inputs` that are
    not local paths (Hub ids, None) are skipped. Returns the resolved
    path."""
    path = _resolve(path)
    for value in inputs:
        if value is None or not Path(str(value)).expanduser().exists():
            continue
        other = _resolve(value)
        if path == other or path.parent == other:  # the commands read their input folders' own entries
            relation = "is" if path == other else "lies in"
            raise ValueError(f"{option} {path} {relation} the input {value}; write it apart from the inputs")
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; give the name of the file to write")
    if path.exists() and not path.is_file():
        raise ValueError(f"{option} {path} exists and is not a regular file")
    _check_writable_location(path, option)
    return path


def hold_output_lock(output_dir: os.PathLike) -> None:
    """Take the write lock of `output_dir` for this process, or refuse because another process holds it."""
    output_dir = _resolve(output_dir)
    if output_dir in _held_locks:
        return
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(output_dir)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_lock_note(descriptor).get("pid", "unknown")
            os.close(descriptor)
            raise FileExistsError(
                f"output folder {output_dir} is being written by another run (pid {holder}); "
                "wait for it to finish or choose another folder"
            ) from None
        try:  # a finishing holder may have removed the file between our open and our lock: lock the new one
            same_file = os.fstat(descriptor).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(descriptor)
    _tidy_after_killed_writer(output_dir, _read_lock_note(descriptor))
    _held_locks[output_dir] = descriptor
    _write_lock_note(output_dir, [])
    _raise_on_termination_signals()


def _read_lock_note(descriptor: int) -> dict:
    """What the lock's holder wrote in it: its pid and the folders it staged beside the destination."""
    os.lseek(descriptor, 0, os.SEEK_SET)
    try:
        note = json.loads(os.read(descriptor, 65536).decode())
    except (ValueError, UnicodeDecodeError):
        return {}
    return note if isinstance(note, dict) else {}


def _write_lock_note(output_dir: Path, staged: list[Path]) -> None:
    descriptor = _held_locks[output_dir]
    os.ftruncate(descriptor, 0)
    os.lseek(descriptor, 0, os.SEEK_SET)
    os.write(descriptor, json.dumps({"pid": os.getpid(), "staged": [str(p) for p in staged]}).encode())


def _tidy_after_killed_writer(output_dir: Path, note: dict) -> None:
    """A writer killed with SIGKILL (no cleanup ran) left the folders it staged beside `output_dir`: remove its
    staging folder, and put the old output back where it had already moved it aside but not yet replaced it."""
    for name in note.get("staged", []):
        staged = Path(name)
        if staged.parent != output_dir.parent or not staged.name.startswith(f".{output_dir.name}-"):
            continue  # only the names this module gives
        moved_aside = staged / output_dir.name
        if "-retired-" in staged.name and moved_aside.exists() and not output_dir.exists():
            os.replace(moved_aside, output_dir)
        shutil.rmtree(staged, ignore_errors=True)


def release_output_lock(output_dir: os.PathLike) -> None:
    output_dir = _resolve(output_dir)
    descriptor = _held_locks.pop(output_dir, None)
    if descriptor is None:
        return
    lock_path(output_dir).unlink(missing_ok=True)
    os.close(descriptor)
    if not _held_locks:
        _restore_signal_handlers()


def release_all_output_locks() -> None:
    for output_dir in list(_held_locks):
        release_output_lock(output_dir)


atexit.register(release_all_output_locks)


class TerminatedError(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like KeyboardInterrupt, so `finally` and cleanup blocks run."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.exit_status = 128 + signum


def _raise_terminated(signum, frame):
    raise TerminatedError(signum)


_replaced_handlers: dict[int, object] = {}


def _raise_on_termination_signals() -> None:
    """Turn SIGTERM/SIGHUP into an exception while an output folder is held, where nobody else handles them."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signum not in _replaced_handlers and signal.getsignal(signum) in (signal.SIG_DFL, None):
            _replaced_handlers[signum] = signal.signal(signum, _raise_terminated)


def _restore_signal_handlers() -> None:
    """Give the process its own handlers back once no output folder is held (a host program keeps its SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        return
    while _replaced_handlers:
        signum, handler = _replaced_handlers.popitem()
        signal.signal(signum, handler)


def record_folder(folder: os.PathLike) -> None:
    """Record a folder that the project created and filled in place (a benchmark's output folder) as its own, so
    that `--overwrite` may replace it later; nothing is written into it."""
    record_written(_resolve(folder))


def write_file_atomically(path: os.PathLike, write: Callable[[Path], object]):
    """Run `write(temporary)` on a hidden file beside `path`, then rename it to `path`; returns what `write` returned.

    The temporary name keeps `path`'s suffix (savefig and torch.save pick the format from it), and it is
    removed if `write` raises, so `path` is either the old file or the whole new one, never half of one.
    """
    path = Path(path)
    if path.is_dir():  # os.replace would fail only after the whole write
        raise IsADirectoryError(f"{path} is a folder; cannot write a file there")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        result = write(temporary)
        # mkstemp made it 0600; give it the mode the file had, or the one open() would have given a new file.
        os.chmod(temporary, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return result


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomically(path: os.PathLike, text: str) -> None:
    """`path.write_text(text)`, all or nothing."""
    write_file_atomically(path, lambda temporary: temporary.write_text(text))


def write_folder_atomically(output_dir: os.PathLike, write: Callable[[Path], object], replace_unmarked: bool = False):
    """Run `write(staging)`, then replace `output_dir` by `staging` whole; returns what `write` returned.

    If `write` raises (or SIGTERM/SIGHUP arrive), the staging folder is removed and `output_dir` is left as it
    was. The folder is recorded as written by this project (unless `replace_unmarked`), and its write lock is
    released at the end.
    A non-empty `output_dir` holding anything the project did not write is never replaced, unless
    `replace_unmarked` says that `write` carries every entry of it into the staging folder itself.
    """
    output_dir = _resolve(output_dir)
    hold_output_lock(output_dir)
    try:
        if not replace_unmarked and output_dir.is_dir():
            foreign = foreign_entries(output_dir)
            if foreign:
                raise FileExistsError(f"{_foreign_message(output_dir, foreign)}; not replacing it")
        staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-staging-", dir=output_dir.parent))
        _write_lock_note(output_dir, [staging])
        try:
            result = write(staging)
            # mkdtemp made it 0700: give it the mode the folder had, or the one mkdir would have given a new folder.
            os.chmod(staging, output_dir.stat().st_mode & 0o7777 if output_dir.is_dir() else 0o777 & ~_umask())
            if output_dir.exists():
                _swap_in(output_dir, staging, check_foreign=not replace_unmarked)
            else:
                os.replace(staging, output_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if not replace_unmarked:  # such a folder carries entries of others (a training folder): not all ours
            record_written(output_dir)
    finally:
        release_output_lock(output_dir)
    return result


def _swap_in(output_dir: Path, staging: Path, check_foreign: bool) -> None:
    """Replace `output_dir` by `staging`. The old folder is moved aside first and checked once more there (no one
    can add to it by its path any more): a file someone put into it during the write puts it back, untouched."""
    retired = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}-retired-", dir=output_dir.parent))
    _write_lock_note(output_dir, [staging, retired])
    old = retired / output_dir.name
    os.replace(output_dir, old)
    foreign = foreign_entries(old, recorded_as=output_dir) if check_foreign else []
    if foreign:
        os.replace(old, output_dir)
        retired.rmdir()
        raise FileExistsError(f"{_foreign_message(output_dir, foreign)} (added during the write); not replacing it")
    os.replace(staging, output_dir)
    shutil.rmtree(retired)
