"""Every command turns a user error into one `error: ...` line on stderr and exit status 2, with no traceback.

Each case (tests/data/command_errors.txt) runs the command's `python -m` entry point in this process (`runpy`,
as `python -m` runs it), with an argument argparse accepts but the command must refuse, and checks that nothing
was written. The real processes are run by the commands' own tests and by `.ci/run` (the installed scripts).
"""

import runpy
import sys
from pathlib import Path

import pytest

CASES = [
    line.split("  =>  ")
    for line in (Path(__file__).parent / "data" / "command_errors.txt").read_text().splitlines()
    if line and not line.startswith("#")
]


# runpy warns when the module was imported before (another case imported it); it runs afresh as __main__ anyway
@pytest.mark.filterwarnings("ignore:.*found in sys.modules after import of package:RuntimeWarning")
@pytest.mark.parametrize("command, words", CASES, ids=[" ".join(command.split()[:2]) for command, _ in CASES])
def test_user_error_is_one_line_and_exit_status_2(tmp_path, monkeypatch, capsys, command, words):
    module, *argv = command.format(tmp=tmp_path, missing=tmp_path / "missing").split()
    monkeypatch.setattr(sys, "argv", [module, *argv])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert not (tmp_path / "out").exists()  # refused before anything was written
