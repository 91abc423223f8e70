"""benchmarks.gpu_dann_seeds (modes x seeds side by side on one GPU) in its CPU dry run, its sizing
arithmetic, its deadline, and the lossless WebP data subset it travels with."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import gpu_dann_seeds
from benchmarks.gpu_suite import make_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_data(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("gpu-data-mnist")
    summary = make_data.main(
        make_data.parse_args(
            [
                "--source",
                str(shared_data),
                "--output_dir",
                str(out),
                "--datasets",
                "mnist5k",
                "mnistm",
                "--mnistm_train",
                "120",
                "--mnistm_validation",
                "60",
                "--image_format",
                "webp",
            ]
        )
    )
    return out, summary


def test_webp_subset_decodes_to_the_pixels_of_the_full_folder(mnist_data, shared_data):
    from adapters.digits import _to_rgb_array, open_image
    from training.dann.data import load_splits

    out, summary = mnist_data
    assert summary["counts"] == {"mnistm/train": 120, "mnistm/validation": 60}
    assert not (out / "usps").exists() and not (out / "lfw_faces").exists()
    subset = load_splits("mnistm", str(out / "mnistm"))
    full_validation = make_data.first_rows(shared_data / "mnistm" / "validation.parquet", 60)
    expected = np.stack([_to_rgb_array(open_image(v, i), 28) for i, v in enumerate(full_validation[0])])
    assert torch.equal(subset.val_images, torch.from_numpy(expected).permute(0, 3, 1, 2))
    assert subset.val_labels.tolist() == full_validation[1].tolist()
    from adapters.digit_sources import from_arrays

    with pytest.raises(ValueError, match="image_format must be one of"):  # lossy formats are not offered
        from_arrays(np.zeros((1, 28, 28), np.uint8), [3], "x", image_format="jpeg")
    mnist = load_splits("mnist", str(out / "mnist5k"))
    assert len(mnist.train_labels) + len(mnist.val_labels) == 5000


def test_group_parsing_and_its_errors():
    group = gpu_dann_seeds.parse_group("wide=source_only,vada:--conv_channels,64,128")
    assert (group.name, group.modes, group.flags) == ("wide", ["source_only", "vada"], ["--conv_channels", "64", "128"])
    assert gpu_dann_seeds.parse_group("narrow=vada:").flags == []
    for bad in ("wide", "wide=vada", "wide=:--x", "wide=vadda:", "two words=vada:", "wide=vada,target_only:"):
        with pytest.raises(Exception, match="--group"):
            gpu_dann_seeds.parse_group(bad)


def test_epochs_fit_the_budget_at_the_slowest_step_in_multiples_of_the_evaluations(tmp_path):
    argv = ["--source_dir", "s", "--target_dir", "t", "--output_dir", str(tmp_path / "o"), "--group", "g=vada:"]
    args = gpu_dann_seeds.parse_args([*argv, "--budget_s", "280", "--deadline_s", "430"])
    # 280 s / (1.2 x 48.5 ms x 62 steps) = 77.6 epochs -> 72, the multiple of 8 below
    assert gpu_dann_seeds.choose_epochs(args, 0.0485, 62) == 72
    assert gpu_dann_seeds.choose_epochs(args, 1e-6, 62) == args.max_epochs
    assert gpu_dann_seeds.choose_epochs(args, 10.0, 62) == args.evals  # never fewer than one evaluation each
    # after a slow calibration, what the deadline leaves (minus a run's own overhead) caps the budget
    assert gpu_dann_seeds.choose_epochs(args, 0.0485, 62, seconds_left=45 + 140) == 32
    with pytest.raises(SystemExit):  # the budget must end before the deadline
        gpu_dann_seeds.parse_args([*argv, "--budget_s", "500", "--deadline_s", "430"])


def _gone(pid: int) -> bool:
    """True once `pid` no longer runs (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_runs_past_the_deadline_are_stopped_with_what_they_started(tmp_path):
    group = gpu_dann_seeds.parse_group("g=vada:")
    jobs = [
        gpu_dann_seeds.Job(group, "vada", seed, tmp_path / f"run{seed}", tmp_path / f"run{seed}.log") for seed in (0, 1)
    ]
    pid_file = tmp_path / "grandchild.pid"
    sleeper = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(60)"
    )
    commands = [[sys.executable, "-c", "print('done')"], [sys.executable, "-c", sleeper]]
    started = time.monotonic()
    gpu_dann_seeds.run_jobs(jobs, commands, started + 4)
    assert time.monotonic() - started < 20
    assert jobs[0].process.returncode == 0
    assert jobs[1].process.returncode < 0  # killed
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(grandchild), "the process the job started outlived it"
    record = gpu_dann_seeds.job_record(jobs[0])
    assert not record["finished"] and "done" in record["log_tail"]  # no metrics.json: reported with its log


@pytest.mark.slow  # every run of the scenario as its own process: about 25 s
def test_dry_run_calibrates_trains_every_run_at_equal_steps_and_tabulates(mnist_data, tmp_path):
    data, _ = mnist_data
    out = tmp_path / "seeds"
    args = gpu_dann_seeds.parse_args(
        [
            "--source_dir",
            str(data / "mnist5k"),
            "--target_dir",
            str(data / "mnistm"),
            "--output_dir",
            str(out),
            "--group",
            "g=source_only,vada:--conv_channels,8,16",
            "--seeds",
            "0",
            "--dry_run",
            "--",
            "--architecture",
            "improved",
            "--input_normalization",
            "per_channel",
            "--batch_size",
            "16",
            "--adapt_bn",
            "--adapt_bn_images",
            "64",
        ]
    )
    summary = gpu_dann_seeds.main(args)
    assert "error" not in summary, summary.get("error")
    assert summary["calibration"]["jobs"] == 2 and summary["finished"] == 2
    assert summary["epochs"] == 2 and summary["steps_per_epoch"] == 2
    assert {r["steps"] for r in summary["runs"]} == {4}  # equal budget in every row
    table = json.loads((out / "figures" / "g" / "mnist-mnistm.json").read_text())
    assert set(table["modes"]) == {"source_only", "vada"}
    config = json.loads((out / "runs" / "g" / "mnist-mnistm-vada-seed0" / "config.json").read_text())
    assert config["conv_channels"] == [8, 16]  # the group's flags reached its runs
    assert (out / "figures" / "g" / "mnist-mnistm-tsne-digit.png").is_file()
    assert "## group g" in (out / "summary.md").read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):  # a second run would meet the first's checkpoints
        gpu_dann_seeds.parse_args(
            ["--source_dir", "s", "--target_dir", "t", "--output_dir", str(out), "--group", "g=vada:"]
        )


def test_the_device_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "run_gpu_dann_mnistm.sh")], check=True)
