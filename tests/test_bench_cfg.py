"""benchmarks.bench_cfg measures real training steps and sampling runs (tiny model, CPU, seconds)."""

import json

import pytest

from benchmarks import bench_cfg
from tests.tiny_models import tiny_cfg_folder, tiny_unet


def test_benchmark_times_training_and_both_samplers(tmp_path, capsys):
    tiny_cfg_folder(tmp_path / "p", num_train_timesteps=20)
    args = bench_cfg.parse_args(
        [
            "--pretrained",
            str(tmp_path / "p"),
            "--device",
            "cpu",
            "--batch_size",
            "8",
            "--train_steps",
            "2",
            "--warmup_steps",
            "1",
            "--num_images",
            "10",
            "--ddim_steps",
            "3",
            "--output_json",
            str(tmp_path / "bench.json"),
        ]
    )
    report = bench_cfg.main(args)
    rows = [(r["measure"], r["variant"]) for r in report["results"]]
    assert rows == [(m, v) for m in ("train", "ddpm", "ddim") for v in ("old", "new")]
    assert not [r for r in report["results"] if "error" in r]
    old_train, new_train, old_ddpm, new_ddpm, ddim, _ = report["results"]
    assert old_train["images_per_s"] == pytest.approx(16 / old_train["timed_s"])
    # on the CPU the old and the new loop draw the same batches and noise: the same losses
    assert new_train["mean_loss"] == pytest.approx(old_train["mean_loss"], rel=1e-5)
    assert old_ddpm["setting"].startswith("ddpm 20 steps") and ddim["setting"].startswith("ddim 3 steps")
    assert old_ddpm["extrapolated"] and old_ddpm["seconds_for_1000"] == pytest.approx(100 * old_ddpm["timed_s"])
    assert new_ddpm["finite"]
    unet = tiny_unet(num_class_embeds=11, attention=True)
    assert json.loads((tmp_path / "bench.json").read_text())["params"] == sum(p.numel() for p in unet.parameters())
    assert "| train | old | batch 8, 2 timed steps |" in capsys.readouterr().out


def test_a_failing_variant_becomes_a_row_that_says_so():
    row = bench_cfg.guarded("train", "new+graphs", lambda: 1 / 0)
    assert row["error"].startswith("ZeroDivisionError") and "failed: ZeroDivisionError" in bench_cfg.format_table(
        {"device": "cpu", "params": 1, "gflop_per_image": 0.0, "results": [row]}
    )


def test_benchmark_rejects_bad_image_counts_and_unknown_variants():
    with pytest.raises(ValueError, match="multiple of 10"):
        bench_cfg.parse_args(["--num_images", "15"])
    with pytest.raises(ValueError, match="unknown modifier"):
        bench_cfg.parse_args(["--train_variants", "new+turbo"])
