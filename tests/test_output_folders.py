"""The output-folder guarantees of adapters.folders: nothing of the user's is replaced, one writer at a time,
signals clean up like exceptions, and a written folder holds its outputs and nothing else."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adapters.folders import (
    check_output_dir,
    hold_output_lock,
    release_all_output_locks,
    write_file_atomically,
    write_folder_atomically,
    write_text_atomically,
)
from adapters.ownership import LEGACY_MARKER, lock_path
from pipelines.ddim_from_noise import cli as ddim_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _release_locks():
    yield
    release_all_output_locks()


def _child(code: str, tmp_path: Path) -> subprocess.Popen:
    """A Python child running `code` with the project importable, which prints 'ready' when it is set."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a suite started under nohup passes SIGHUP on ignored, and the project rightly leaves an ignored signal
        # alone; the child starts with the default disposition, as a command started from a terminal has
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
    )


def _wait_ready(child: subprocess.Popen) -> None:
    line = child.stdout.readline()
    assert line.strip() == "ready", child.stderr.read()


def test_overwrite_replaces_only_a_folder_the_project_wrote(tmp_path):
    theirs = tmp_path / "thesis"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="not empty"):
        check_output_dir(theirs, overwrite=False)
    with pytest.raises(FileExistsError, match="thesis.tex, which this project did not write"):
        check_output_dir(theirs, overwrite=True)
    with pytest.raises(FileExistsError, match="did not write"):
        write_folder_atomically(theirs, lambda staging: (staging / "x").write_text("x"))
    assert (theirs / "thesis.tex").read_text() == "years of work"

    ours = tmp_path / "ours"
    write_folder_atomically(ours, lambda staging: (staging / "a.png").write_text("1"))
    assert os.listdir(ours) == ["a.png"]  # the outputs and nothing else: no marker, lock or record
    check_output_dir(ours, overwrite=True)
    write_folder_atomically(ours, lambda staging: (staging / "b.png").write_text("2"))
    assert os.listdir(ours) == ["b.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours", "thesis"]  # no staging, retired or lock left


def test_a_file_of_the_user_in_a_folder_the_project_wrote_is_kept(tmp_path):
    ours = tmp_path / "digits"
    write_folder_atomically(ours, lambda staging: [(staging / f"{d}_001.png").write_text(str(d)) for d in range(3)])
    (ours / "notes.txt").write_text("mine")
    (ours / "sub").mkdir()
    (ours / "sub" / "x.png").write_text("mine too")
    with pytest.raises(FileExistsError, match="notes.txt, sub, sub/x.png, which this project did not write"):
        check_output_dir(ours, overwrite=True)
    (ours / "notes.txt").unlink()
    shutil.rmtree(ours / "sub")
    (ours / "0_001.png").write_text("edited by the user")  # one of ours, changed since: the user's now
    with pytest.raises(FileExistsError, match="0_001.png, which"):
        write_folder_atomically(ours, lambda staging: (staging / "new.png").write_text("new"))
    assert (ours / "0_001.png").read_text() == "edited by the user"
    (ours / "0_001.png").unlink()  # deleting some of ours leaves a folder that is still all ours
    check_output_dir(ours, overwrite=True)
    write_folder_atomically(ours, lambda staging: (staging / "new.png").write_text("new"))
    assert os.listdir(ours) == ["new.png"]


def test_a_folder_moved_elsewhere_or_of_an_earlier_release(tmp_path):
    write_folder_atomically(tmp_path / "a", lambda staging: (staging / "00.png").write_text("x"))
    os.rename(tmp_path / "a", tmp_path / "b")  # a copy or a move is no longer known as the project's
    with pytest.raises(FileExistsError, match="00.png, which this project did not write"):
        check_output_dir(tmp_path / "b", overwrite=True)
    old = tmp_path / "old"
    old.mkdir()
    (old / "00.png").write_text("x")
    (old / LEGACY_MARKER).write_text("written by guided-diffusion-da\n")  # what earlier releases left inside
    check_output_dir(old, overwrite=True)
    write_folder_atomically(old, lambda staging: (staging / "01.png").write_text("y"))
    assert os.listdir(old) == ["01.png"]  # and the replacement is clean


def test_a_file_added_during_the_write_stops_the_replacement(tmp_path):
    out = tmp_path / "out"
    write_folder_atomically(out, lambda staging: (staging / "00.png").write_text("old"))

    def write(staging):
        (staging / "00.png").write_text("new")
        (out / "mine.txt").write_text("dropped in while the command ran")

    with pytest.raises(FileExistsError, match=r"mine.txt, which .*\(added during the write\)"):
        write_folder_atomically(out, write)
    assert sorted(os.listdir(out)) == ["00.png", "mine.txt"] and (out / "00.png").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_next_writer_tidies_what_a_killed_one_left(tmp_path):
    out = tmp_path / "out"
    write_folder_atomically(out, lambda staging: (staging / "00.png").write_text("old"))
    child = _child(
        f"""
        import os, time
        from adapters import folders

        def write(staging):
            (staging / "00.png").write_text("new")
        real_replace = os.replace
        def replace(source, target):
            real_replace(source, target)
            if "-retired-" in str(target):
                print("ready", flush=True)  # the old output is aside, the new one not yet in place
                time.sleep(60)
        folders.os.replace = replace
        folders.write_folder_atomically({str(out)!r}, write)
        """,
        tmp_path,
    )
    _wait_ready(child)
    child.kill()  # SIGKILL: no cleanup runs
    child.wait()
    assert not out.exists() and len(list(tmp_path.glob(".out-*"))) == 2  # staging and the old output aside
    check_output_dir(out, overwrite=True)  # the next writer puts the old output back and removes the rest
    assert (out / "00.png").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("where", ["is", "inside", "holds"])
def test_an_input_is_never_the_output(tmp_path, where):
    model = tmp_path / "model"
    (model / "unet").mkdir(parents=True)
    (model / "unet" / "config.json").write_text("{}")
    output = {"is": model, "inside": model / "unet", "holds": tmp_path}[where]
    with pytest.raises(ValueError, match="the input"):
        check_output_dir(output, overwrite=True, inputs=(str(model), None, "owner/hub-id"))
    # A new, empty folder inside an input loses nothing (a model folder's own GT/), so it is allowed.
    check_output_dir(model / "GT", overwrite=False, inputs=(str(model),))


def test_the_current_folder_is_never_the_output(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for output in (".", "..", str(tmp_path)):
        with pytest.raises(ValueError, match="current folder"):
            check_output_dir(output, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_an_output_inside_a_file_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="notes.txt is a file"):
        check_output_dir(tmp_path / "notes.txt" / "out", overwrite=False)
    with pytest.raises(NotADirectoryError, match="is a file"):
        check_output_dir(tmp_path / "notes.txt", overwrite=True)


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path):
    output = tmp_path / "out"
    first = _child(
        f"""
        import time
        from adapters.folders import hold_output_lock
        hold_output_lock({str(output)!r})
        print("ready", flush=True)
        time.sleep(60)
        """,
        tmp_path,
    )
    try:
        _wait_ready(first)
        with pytest.raises(FileExistsError, match=f"another run \\(pid {first.pid}\\)"):
            check_output_dir(output, overwrite=False)
    finally:
        first.kill()
        first.wait()
    # kill -9 left the lock file (in the project's state folder, not beside the output), but the kernel dropped
    # the lock: the next run goes ahead.
    assert lock_path(output).exists() and list(tmp_path.iterdir()) == []
    check_output_dir(output, overwrite=False)
    write_folder_atomically(output, lambda staging: (staging / "a").write_text("a"))
    assert not lock_path(output).exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_write_leaves_nothing_half_written(tmp_path, signum):
    child = _child(
        f"""
        import time
        from pathlib import Path
        from adapters.folders import check_output_dir, write_folder_atomically
        from pipelines.command_line import run_command

        def write(staging):
            (staging / "00.png").write_text("partial")
            print("ready", flush=True)
            time.sleep(60)

        def main(argv):
            check_output_dir({str(tmp_path / "out")!r}, overwrite=False)
            write_folder_atomically({str(tmp_path / "out")!r}, write)

        run_command(main, None, [])
        """,
        tmp_path,
    )
    _wait_ready(child)
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == 128 + signum
    assert stderr.count("error:") == 1 and "Traceback" not in stderr, stderr
    assert signal.Signals(signum).name in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no staging folder, no lock file


def test_the_lock_is_per_folder_and_reentrant(tmp_path):
    hold_output_lock(tmp_path / "a")
    hold_output_lock(tmp_path / "a")  # the same process may take it again
    check_output_dir(tmp_path / "b", overwrite=False)  # another folder is free
    release_all_output_locks()
    assert list(tmp_path.iterdir()) == []


def test_ddim_command_refuses_to_overwrite_its_noise_folder(tmp_path, capsys):
    noise = tmp_path / "noise"
    assert ddim_cli.cli(["noise", "--output_dir", str(noise), "--num_noises", "2", "--resolution", "8"]) is None
    before = {p.name: p.read_bytes() for p in noise.iterdir()}
    with pytest.raises(SystemExit) as exit_info:
        ddim_cli.cli(
            [
                "--pretrained",
                str(ROOT / "hub_cards" / "ddpm-lfw-faces"),
                "--noise_dir",
                str(noise),
                "--output_dir",
                str(noise),
                "--overwrite",
            ]
        )
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "the input" in err
    assert {p.name: p.read_bytes() for p in noise.iterdir()} == before


def test_the_process_gets_its_sigterm_handler_back(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    check_output_dir(tmp_path / "out", overwrite=False)
    assert signal.getsignal(signal.SIGTERM) is not before  # while the folder is held, SIGTERM cleans up
    write_folder_atomically(tmp_path / "out", lambda staging: (staging / "a").write_text("a"))
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_single_file_is_written_whole_with_the_usual_mode(tmp_path):
    target = tmp_path / "README.md"
    write_text_atomically(target, "card")
    assert target.read_text() == "card"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_current_umask()
    target.chmod(0o640)
    with pytest.raises(RuntimeError):
        write_file_atomically(target, lambda temporary: (temporary.write_text("half"), _fail()))
    assert target.read_text() == "card" and target.stat().st_mode & 0o777 == 0o640
    write_text_atomically(target, "new card")
    assert target.stat().st_mode & 0o777 == 0o640  # an existing file keeps its mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


def _fail():
    raise RuntimeError("crash mid-write")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_written_folder_gets_the_usual_mode_or_keeps_its_own(tmp_path):
    write_folder_atomically(tmp_path / "new", lambda staging: (staging / "a").write_text("a"))
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o777 & ~_current_umask()  # not mkdtemp's 0700
    (tmp_path / "new").chmod(0o750)
    write_folder_atomically(tmp_path / "new", lambda staging: (staging / "b").write_text("b"))
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o750
