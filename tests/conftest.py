"""Shared test set-up: offline Hub, a per-session decode cache, and the location of the real data."""

import os
from pathlib import Path

# Must be set before datasets / huggingface_hub are imported anywhere in the test session.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# One torch thread per test process (and its subprocesses): the tests' models are tiny, so a second thread buys
# little and costs much on a loaded 2-core machine (the pipeline tests: 61 s with two threads, 12.5 s with one).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _digit_cache(tmp_path_factory):
    os.environ["DIGITS_CACHE_DIR"] = str(tmp_path_factory.mktemp("digit-cache"))


@pytest.fixture(scope="session", autouse=True)
def _project_state(tmp_path_factory):
    """The records of what the project wrote and its write locks (adapters.ownership) go to the session's own
    folder, also for the commands the tests start as subprocesses, not to the user's ~/.local/state."""
    os.environ["GUIDED_DIFFUSION_DA_STATE_DIR"] = str(tmp_path_factory.mktemp("project-state"))


@pytest.fixture(scope="session")
def shared_data():
    """The real datasets of ../shared/data (or $SHARED_DATA); tests that need them are skipped where they are
    absent. Session-scoped, so that module fixtures can build on it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set SHARED_DATA)")
    return SHARED_DATA
