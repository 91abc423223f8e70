"""Every command turns a user error into one `error: ...` line on stderr and exit status 2, with no traceback.

Each case runs the real `python -m ...` entry point in a subprocess, with an argument argparse accepts but the
command must refuse, and checks that nothing was written.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# (module, arguments, words the error line must contain); {tmp} is a fresh folder, {missing} a path in it.
CASES = [
    ("pipelines.conditional_ddpm", "--pretrained {missing} --output_dir {tmp}/out", "does not exist"),
    ("pipelines.conditional_ddpm", "--guidance nan --output_dir {tmp}/out", "--guidance"),
    ("pipelines.conditional_ddpm.figures", "--sweep_samples 0 --output_dir {tmp}/out", "--sweep_samples"),
    (
        "pipelines.ddim_from_noise",
        "--pretrained {missing} --noise_dir {tmp} --output_dir {tmp}/out --num_inference_steps 0",
        "--num_inference_steps",
    ),
    ("pipelines.ddim_from_noise", "--pretrained {missing} --noise_dir {tmp} --output_dir {tmp}/out", "does not exist"),
    ("pipelines.ddim_from_noise", "score --pred {tmp} --gt {missing}", "does not exist"),
    ("pipelines.ddim_from_noise", "noise --output_dir {tmp}/out --num_noises 0", "--num_noises"),
    (
        "pipelines.ddim_from_noise.figures",
        "--pretrained {missing} --noise_dir {tmp} --output_dir {tmp}/out",
        "does not exist",
    ),
    ("pipelines.digit_classifier", "--images {missing}", "does not exist"),
    ("pipelines.dann", "--pretrained {missing} --input_dir {missing} --output_csv {tmp}/out/p.csv", ""),
    ("training.report", "--output_dir {tmp}/out --cfg_pretrained {missing}", "--cfg_pretrained"),
    (
        "training.report.dann_experiments",
        "--source_dir {missing} --runs_dir {tmp}/out --figures_dir {tmp}/out",
        "does not exist",
    ),
    (
        "training.train_digit_classifier",
        "--max_train_steps 0 --output_dir {tmp}/out --project_dir {tmp}/out",
        "--max_train_steps",
    ),
    ("training.train_cfg", "--train_data {missing} --output_dir {tmp}/out", "does not exist"),
    ("training.train_ddpm", "--train_data {missing} --output_dir {tmp}/out", "not a folder"),
]


@pytest.mark.parametrize("module, arguments, words", CASES, ids=[f"{c[0]} {c[1].split()[0]}" for c in CASES])
def test_user_error_is_one_line_and_exit_status_2(tmp_path, module, arguments, words):
    argv = arguments.format(tmp=tmp_path, missing=tmp_path / "missing").split()
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", module, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], done.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written
