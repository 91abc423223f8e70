"""The training scripts against a user's faults: nothing of theirs lost, no code run from a checkpoint, an
interrupted save never resumed, and one `error:` line, before any work, for a folder, checkpoint or image that
cannot be used. Each command runs in-process as `python training/SCRIPT.py ARGS` would (argv through
`run_command`), except the kill -9 test, which needs a real process to kill."""

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from launch_training import ROOT

from pipelines.command_line import run_command
from training import train_cfg, train_dann, train_ddpm, train_digit_classifier
from training.checkpoints import MANIFEST, find_checkpoint, list_checkpoints, verify
from training.diffusion.args import FREE_FLAGS
from training.run_folder import RUN_RECORD, run_identity

TINY_UNET = ["--block_out_channels", "8", "16", "--norm_num_groups", "4", "--train_batch_size", "8"]
QUIET = ["--logging_steps", "1", "--report_to", "none", "--lr_warmup_steps", "1", "--save_images_steps", "100"]
TINY_CFG = [*TINY_UNET, *QUIET, "--max_train_images", "64", "--sample_images_per_digit", "1"]
TINY_CFG += ["--sample_inference_steps", "2", "--max_train_steps", "2", "--checkpointing_steps", "1"]
TINY_DDPM = [*TINY_UNET, *QUIET, "--resolution", "16", "--channels", "1", "--num_train_timesteps", "50"]
TINY_DDPM += ["--sample_images", "1", "--sample_inference_steps", "2", "--max_train_steps", "1"]
TINY_DANN = ["--epochs", "1", "--steps_per_epoch", "1", "--batch_size", "32", "--num_threads", "1"]
TINY_DANN += ["--mode", "source_only", "--architecture", "report"]
TINY_CLASSIFIER = ["--block_channels", "4", "8", "--train_batch_size", "32", "--max_train_steps", "1"]


def command(script, argv: list[str], capsys) -> tuple[int, list[str]]:
    """(exit status, stderr lines) of `python training/<script>.py ARGV`, run in this process."""
    capsys.readouterr()
    try:
        run_command(script.main, script.parse_args, [str(a) for a in argv])
        status = 0
    except SystemExit as exit_info:
        status = exit_info.code
    return status, capsys.readouterr().err.splitlines()


def assert_one_error_line(status: int, stderr: list[str], *fragments: str) -> None:
    errors = [line for line in stderr if line.startswith("error:")]
    assert status == 2 and len(errors) == 1, stderr
    assert not any("Traceback" in line for line in stderr)
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its bytes: what a refused command must leave exactly as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def add_strangers(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thesis.tex").write_text("\\chapter{Results}\n")
    (folder / "other_run").mkdir()
    (folder / "other_run" / "notes.txt").write_text("keep me\n")
    return snapshot(folder)


# (script, folder flags, tiny flags, a flag that makes another run)
SCRIPTS = {
    "train_cfg": (train_cfg, TINY_CFG, ["--block_out_channels", "8", "32"]),
    "train_ddpm": (train_ddpm, TINY_DDPM, ["--channels", "3"]),
    "train_dann": (train_dann, TINY_DANN, ["--mode", "target_only"]),
    "train_digit_classifier": (train_digit_classifier, TINY_CLASSIFIER, ["--dropout", "0.1"]),
}


def folder_flags(name: str, folder: Path) -> list[str]:
    if name == "train_digit_classifier":  # checkpoints in --project_dir, the model in --output_dir inside it
        return ["--project_dir", folder, "--output_dir", folder / "model"]
    return ["--output_dir", folder]


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_run_keeps_files_it_did_not_write_and_refuses_another_runs_folder(name, tmp_path, capsys):
    script, tiny, other = SCRIPTS[name]
    folder = tmp_path / "out"
    strangers = add_strangers(folder)
    if name == "train_digit_classifier":
        strangers |= {f"model/{k}": v for k, v in add_strangers(folder / "model").items()}
    status, stderr = command(script, [*folder_flags(name, folder), *tiny], capsys)
    assert status == 0, stderr
    after = snapshot(folder)
    assert {k: after.get(k) for k in strangers} == strangers  # every file of the user's, unchanged
    assert (folder / RUN_RECORD).is_file()

    status, stderr = command(script, [*folder_flags(name, folder), *tiny, *other], capsys)
    assert_one_error_line(status, stderr, "holds another run", other[0])
    assert snapshot(folder) == after  # refused before writing anything


def test_a_folder_holding_names_the_run_writes_without_its_record_is_refused(tmp_path, capsys):
    (tmp_path / "unet").mkdir()
    (tmp_path / "README.md").write_text("my own notes\n")
    before = snapshot(tmp_path)
    status, stderr = command(train_cfg, ["--output_dir", tmp_path, *TINY_CFG], capsys)
    assert_one_error_line(status, stderr, "README.md, unet", "no record that this run wrote them")
    assert snapshot(tmp_path) == before


@pytest.fixture(scope="module")
def cfg_run(tmp_path_factory) -> Path:
    """A finished tiny train_cfg.py run: checkpoint-1, checkpoint-2 and the export."""
    folder = tmp_path_factory.mktemp("cfg") / "run"
    train_cfg.main(train_cfg.parse_args(["--output_dir", str(folder), *TINY_CFG]))
    return folder


@pytest.fixture
def cfg_copy(cfg_run, tmp_path) -> Path:
    return Path(shutil.copytree(cfg_run, tmp_path / "run", symlinks=True))


def identity_of(argv: list[str]) -> dict:
    return run_identity(train_cfg.parse_args([str(a) for a in argv]), FREE_FLAGS)


def test_latest_skips_interrupted_saves_and_other_runs_checkpoints(cfg_copy, capsys, caplog):
    empty = cfg_copy / "checkpoint-7"  # what a kill -9 in accelerate's save_state left
    empty.mkdir()
    partial = Path(shutil.copytree(cfg_copy / "checkpoint-2", cfg_copy / "checkpoint-8"))
    (partial / MANIFEST).unlink()
    foreign = Path(shutil.copytree(cfg_copy / "checkpoint-2", cfg_copy / "checkpoint-9"))
    record = json.loads((foreign / MANIFEST).read_text())
    record["run"]["block_out_channels"] = [8, 32]
    (foreign / MANIFEST).write_text(json.dumps(record))

    identity = identity_of(["--output_dir", cfg_copy, *TINY_CFG])
    assert find_checkpoint("latest", cfg_copy, identity) == (2, cfg_copy / "checkpoint-2")
    skipped = " ".join(caplog.messages)
    assert all(f"checkpoint-{n}" in skipped for n in (7, 8, 9))

    argv = ["--output_dir", cfg_copy, *TINY_CFG, "--max_train_steps", "3"]
    status, stderr = command(train_cfg, [*argv, "--resume_from_checkpoint", partial], capsys)
    assert_one_error_line(status, stderr, "not a complete checkpoint")
    status, stderr = command(train_cfg, [*argv, "--resume_from_checkpoint", foreign], capsys)
    assert_one_error_line(status, stderr, "belongs to another run", "--block_out_channels [8, 32] (recorded)")

    status, _ = command(train_cfg, [*argv, "--resume_from_checkpoint", "latest"], capsys)
    assert status == 0
    assert [step for step, _ in list_checkpoints(cfg_copy)] == [1, 2, 3, 7, 8, 9]  # pruning kept what is not ours
    verify(cfg_copy / "checkpoint-3", identity)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_checkpoint_is_one_error_line_before_any_work(cfg_copy, capsys, damage):
    weights = cfg_copy / "checkpoint-2" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:-1] + bytes([data[-1] ^ 1]))
    before = snapshot(cfg_copy)
    argv = ["--output_dir", cfg_copy, *TINY_CFG, "--max_train_steps", "3", "--resume_from_checkpoint", "latest"]
    status, stderr = command(train_cfg, argv, capsys)
    assert_one_error_line(status, stderr, "checkpoint-2 is damaged: model.safetensors")
    assert snapshot(cfg_copy) == before


class WritesSentinel:
    """Unpickling this creates the file `path`: the proof that a pickle was loaded."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any unpickling during the test fails it, whatever file it comes from."""

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)


def plant_pickles(checkpoint: Path, sentinel: Path) -> None:
    """accelerate's pickle names, holding a payload."""
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin"):
        (checkpoint / name).write_bytes(pickle.dumps(WritesSentinel(sentinel)))


def test_resuming_a_diffusion_run_loads_no_pickle(cfg_copy, tmp_path, capsys, no_unpickling):
    sentinel = tmp_path / "code-ran"
    plant_pickles(cfg_copy / "checkpoint-2", sentinel)
    argv = ["--output_dir", cfg_copy, *TINY_CFG, "--max_train_steps", "3", "--resume_from_checkpoint", "latest"]
    status, stderr = command(train_cfg, argv, capsys)
    assert status == 0, stderr
    assert not sentinel.exists()

    # a pickle in place of a state file, its record updated to match: refused as unreadable, never unpickled
    checkpoint = cfg_copy / "checkpoint-3"
    payload = pickle.dumps(WritesSentinel(sentinel))
    (checkpoint / "optimizer.safetensors").write_bytes(payload)
    record = json.loads((checkpoint / MANIFEST).read_text())
    record["files"]["optimizer.safetensors"] = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    (checkpoint / MANIFEST).write_text(json.dumps(record))
    status, stderr = command(train_cfg, [*argv[:-1], "latest", "--max_train_steps", "4"], capsys)
    assert_one_error_line(status, stderr, "optimizer.safetensors is unreadable")
    assert not sentinel.exists()


def test_resuming_a_dann_run_loads_no_pickle(tmp_path, capsys, no_unpickling):
    folder, sentinel = tmp_path / "dann", tmp_path / "code-ran"
    argv = ["--output_dir", folder, *TINY_DANN, "--mode", "mean_teacher"]
    assert command(train_dann, argv, capsys)[0] == 0
    [(_, checkpoint)] = list_checkpoints(folder / "checkpoints")
    plant_pickles(checkpoint, sentinel)
    status, stderr = command(train_dann, [*argv, "--epochs", "2", "--resume_from_checkpoint", "latest"], capsys)
    assert status == 0, stderr
    assert not sentinel.exists()
    assert [h["epoch"] for h in json.loads((folder / "metrics.json").read_text())["history"]] == [1, 2]


def test_a_corrupt_image_in_train_data_is_one_error_line_before_any_work(tmp_path, capsys):
    from PIL import Image

    images = tmp_path / "faces"
    images.mkdir()
    for i in range(2):
        Image.new("L", (20, 20), 40 * i).save(images / f"{i}.png")
    good = (images / "0.png").read_bytes()
    (images / "2.png").write_bytes(good[: len(good) // 2])  # truncated
    output = tmp_path / "out"
    status, stderr = command(train_ddpm, ["--train_data", images, "--output_dir", output, *TINY_DDPM], capsys)
    assert_one_error_line(status, stderr, "--train_data", "2.png")
    assert not output.exists()
    (images / "2.png").write_bytes(b"not an image at all")
    status, stderr = command(train_ddpm, ["--train_data", images, "--output_dir", output, *TINY_DDPM], capsys)
    assert_one_error_line(status, stderr, "--train_data", "2.png")


@pytest.mark.slow
def test_kill_9_during_a_checkpoint_save_leaves_no_checkpoint_name(tmp_path):
    """A real process, killed the moment a save is under way: the save's folder has no checkpoint-N name, every
    checkpoint-N left is complete, and `latest` resumes from the newest of them."""
    folder = tmp_path / "run"
    argv = [*TINY_CFG, "--max_train_steps", "400", "--checkpoints_total_limit", "2", "--output_dir", str(folder)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "training" / "train_cfg.py"), *argv],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, killed_during = time.monotonic() + 240, None
    try:
        while process.poll() is None and time.monotonic() < deadline:
            names = os.listdir(folder) if folder.is_dir() else []
            saving = [n for n in names if n.startswith(".checkpoint-") and n.endswith(".partial")]
            if saving and any(n.startswith("checkpoint-") for n in names):  # a second save: one complete before it
                os.kill(process.pid, signal.SIGKILL)
                killed_during = saving[0]
                break
    finally:
        if process.poll() is None and killed_during is None:
            process.kill()
        process.wait()
    assert killed_during is not None, "the run ended before a save could be interrupted"
    assert (folder / killed_during).is_dir()  # killed mid-save: the save's folder is still under its temporary name

    identity = identity_of(argv)
    interrupted_step = int(killed_during.split("-")[1].split(".")[0])
    complete = [step for step, path in list_checkpoints(folder) if verify(path, identity)]
    assert complete and interrupted_step not in complete  # every checkpoint-N is whole; the interrupted one is not
    newest = complete[-1]
    resume = [*argv, "--max_train_steps", str(newest + 1), "--resume_from_checkpoint", "latest"]
    result = train_cfg.main(train_cfg.parse_args(resume))
    assert result.global_step == newest + 1
    verify(folder / f"checkpoint-{newest + 1}", identity)
    assert not list(folder.glob(".checkpoint-*"))  # the interrupted save's folder was this run's to clean up
