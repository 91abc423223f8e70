"""`accelerate launch` of a training script as a user runs it, for the tests that need real processes."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def launch(script: str, args: list[str], num_processes: int = 1, port: int | None = None, **run_options):
    """Run training/`script` under `accelerate launch` on the CPU (one torch thread per process, Hub offline).

    Several processes join one gloo group (`--multi_gpu` without CUDA); `port` separates tests that may run
    at the same time. Returns the CompletedProcess with text output; the caller checks the exit status."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    processes = ["--multi_gpu"] if num_processes > 1 else []
    processes += ["--num_processes", str(num_processes), "--num_machines", "1"]
    fixed = ["--mixed_precision", "no", "--dynamo_backend", "no"]
    fixed += ["--main_process_port", str(port)] if port is not None else []
    command = [sys.executable, "-m", "accelerate.commands.launch", *processes, *fixed, str(ROOT / "training" / script)]
    run_options = {"cwd": ROOT, "env": env, "capture_output": True, "text": True, "timeout": 300, **run_options}
    return subprocess.run([*command, *map(str, args)], **run_options)
