"""Faults a user meets, injected into the commands as a user would run them: one `error:` line, exit status 2, no
traceback, and nothing of the user's changed, no staging folder or lock left, no code run from data.

Each case runs a command's `cli(argv)` in this process (what its console script and `python -m` run) against a
damaged input: a corrupt or truncated model folder, a folder of the wrong kind, an unreadable or oversized image,
an output path that cannot be written, a crafted pickle. The checks run before any model work, so every case is
fast. Folder guarantees (locks, signals, --overwrite) are tested in test_output_folders.py, training faults in
test_training_safety.py.
"""

import gzip
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import hub_cards
from pipelines.hub import publish

# A pickle that would leave this file behind if anything unpickled it.
CODE_RAN = Path(os.environ.get("TMPDIR", "/tmp")) / "guided-diffusion-da-fault-injection-code-ran"


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (CODE_RAN,))


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every entry under `folder` (hidden ones too) with its bytes (None for folders and other entries)."""
    return {
        str(path.relative_to(folder)): path.read_bytes() if path.is_file() and not path.is_symlink() else None
        for path in sorted(folder.rglob("*"))
    }


def one_error_line(cli, argv, capsys) -> str:
    """Run `cli(argv)` as a user would; the command must exit 2 with one `error:` line and no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        cli([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def unchanged(tmp_path):
    """Yields tmp_path; afterwards nothing in it may have changed, appeared (staging, locks) or vanished."""
    before = tree(tmp_path)
    yield tmp_path
    assert tree(tmp_path) == before


@pytest.fixture(autouse=True)
def _no_code_ran():
    CODE_RAN.unlink(missing_ok=True)
    yield
    assert not CODE_RAN.exists(), "a pickle from the test data was unpickled"


# ---- 3. no code runs from data: the Hub publisher ----------------------------------------------------------------


@pytest.fixture
def publishable(tmp_path):
    """A copy of a shipped folder: a card, code copies equal to the package, safetensors weights."""
    folder = tmp_path / "model"
    shutil.copytree(hub_cards.path("mnistm-digit-classifier"), folder)
    return folder


def _zip_pickle(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(_Exploit()))


PICKLES = {
    "weights.pth.tar": lambda path: path.write_bytes(pickle.dumps(_Exploit(), protocol=2)),
    "model.joblib": lambda path: path.write_bytes(pickle.dumps({"coef": [1.0]}, protocol=5)),
    "state.pkl.gz": lambda path: path.write_bytes(gzip.compress(pickle.dumps(_Exploit()))),
    "sub/notes.txt": lambda path: path.write_bytes(pickle.dumps(_Exploit(), protocol=0)),  # anywhere in the tree
    "extra.safetensors": _zip_pickle,
    "table.npy": lambda path: np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True),
    "optimizer.pt": lambda path: torch.save({"step": torch.tensor(1)}, path),
}


@pytest.mark.parametrize("name", sorted(PICKLES))
def test_publisher_refuses_a_pickle_whatever_its_name(publishable, name, capsys):
    path = publishable / name
    path.parent.mkdir(exist_ok=True)
    PICKLES[name](path)
    before = tree(publishable.parent)
    line = one_error_line(publish.cli, [publishable, "--repo_id", "me/x", "--dry_run"], capsys)
    assert "pickled" in line and name in line
    assert tree(publishable.parent) == before


def test_publisher_lets_one_tensor_and_plain_arrays_go_up_and_keeps_bookkeeping_local(publishable, capsys):
    torch.save(torch.randn(1, 3, 4, 4), publishable / "00.pt")  # a course-format noise: data, not code
    np.save(publishable / "means.npy", np.arange(3.0))
    np.savez(publishable / "stats.npz", mean=np.arange(3.0))
    from adapters.folders import MARKER
    from training.run_folder import RUN_RECORD

    (publishable / MARKER).write_text("written by guided-diffusion-da\n")
    (publishable / RUN_RECORD).write_text("{}")
    listed = publish.main(publish.parse_args([str(publishable), "--repo_id", "me/x", "--dry_run"]))
    assert {"00.pt", "means.npy", "stats.npz", "model.safetensors"} <= set(listed)
    assert MARKER not in listed and RUN_RECORD not in listed
    assert not any(name.startswith(".") for name in capsys.readouterr().out.split())


def test_publisher_refuses_a_link_out_of_the_folder(publishable, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the Hub")
    (publishable / "notes.txt").symlink_to(secret)
    line = one_error_line(publish.cli, [publishable, "--repo_id", "me/x", "--dry_run"], capsys)
    assert "outside" in line and "notes.txt" in line
    (publishable / "notes.txt").unlink()
    (publishable / "more").symlink_to(tmp_path, target_is_directory=True)
    line = one_error_line(publish.cli, [publishable, "--repo_id", "me/x", "--dry_run"], capsys)
    assert "outside" in line and "more" in line
    (publishable / "more").unlink()
    (publishable / "card.md").symlink_to(publishable / "README.md")  # a link that stays inside is only a file
    assert "card.md" in publish.main(publish.parse_args([str(publishable), "--repo_id", "me/x", "--dry_run"]))
