"""Every ```python block of README.md runs as written, each in a fresh namespace from the repository root.

Two blocks need files the repository cannot hold, and get them here rather than being edited or skipped:
the course's own face UNet (`from UNet import UNet`, `hw2_data/face/UNet.pt`) is stood in for by a small network
with that interface, written to a temporary folder the block runs from; blocks that read `../shared/data` run where
the real data is, and are skipped (with the reason) where it is not.
"""

import re
import sys
import time

import pytest
import torch

from tests.conftest import REPO_ROOT, SHARED_DATA

README = REPO_ROOT / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
HEADING = re.compile(r"^#+ (.*)$", re.MULTILINE)
COURSE_UNET = "from UNet import UNet"

# The course's face network has its own code; this stand-in has its interface: UNet() builds it, forward(x, t)
# returns eps of x's shape, and its state dict loads with weights_only=True.
STAND_IN_UNET = """
import torch


class UNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x, t):
        t = t.float().view(-1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[2:]) / 1000
        return self.net(torch.cat([x, t], dim=1))
"""


def readme_blocks() -> list:
    text = README.read_text()
    headings = [(m.start(), m.group(1)) for m in HEADING.finditer(text)]
    blocks = []
    for number, match in enumerate(BLOCK.finditer(text), 1):
        section = [title for start, title in headings if start < match.start()][-1]
        blocks.append(pytest.param(number, match.group(1), id=f"{number}-{section[:40]}"))
    return blocks


def test_the_readme_has_python_blocks():
    assert len(readme_blocks()) >= 4


@pytest.mark.slow
@pytest.mark.parametrize("number, code", readme_blocks())
def test_readme_block_runs_as_written(number, code, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    if "../shared/data" in code and not SHARED_DATA.is_dir():
        pytest.skip(f"the block reads ../shared/data, not found at {SHARED_DATA}")
    if COURSE_UNET in code:
        write_course_files(tmp_path)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.chdir(tmp_path)
    # One torch thread: on the 2 shared cores the faces block's 50 steps took 1.1 s this way and 4.5-10 s with two
    # threads (measured); the blocks check nothing that depends on the thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        exec(compile(code, f"<README.md, python block {number}>", "exec"), {"__name__": "__readme__"})
    finally:
        torch.set_num_threads(threads)
        sys.modules.pop("UNet", None)  # the stand-in, imported by the block
    print(f"README block {number}: {time.perf_counter() - start:.1f} s")


def write_course_files(folder):
    """`UNet.py` (the stand-in) and `hw2_data/face/UNet.pt`, its weights, as the course hands them out."""
    (folder / "UNet.py").write_text(STAND_IN_UNET)
    namespace = {}
    exec(compile(STAND_IN_UNET, str(folder / "UNet.py"), "exec"), namespace)
    torch.manual_seed(0)
    (folder / "hw2_data" / "face").mkdir(parents=True)
    torch.save(namespace["UNet"]().state_dict(), folder / "hw2_data" / "face" / "UNet.pt")
