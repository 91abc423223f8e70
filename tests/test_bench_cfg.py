"""benchmarks/bench_cfg.py measures real training steps and sampling runs (tiny model, CPU, seconds)."""

import json
import sys
from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from pipelines import ConditionalDDPMPipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_cfg  # noqa: E402


def test_benchmark_times_training_and_both_samplers(tmp_path, capsys):
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), num_class_embeds=11)
    pipe = ConditionalDDPMPipeline(unet, DDPMScheduler(num_train_timesteps=20), null_class_id=10)
    pipe.save_pretrained(tmp_path / "p")
    args = bench_cfg.parse_args(["--pretrained", str(tmp_path / "p"), "--device", "cpu", "--batch_size", "8",
                                 "--train_steps", "2", "--warmup_steps", "1", "--num_images", "10",
                                 "--ddim_steps", "3", "--output_json", str(tmp_path / "bench.json")])
    report = bench_cfg.main(args)
    assert [r["measure"] for r in report["results"]] == ["train", "ddpm", "ddim"]
    train, ddpm, ddim = report["results"]
    assert train["images_per_s"] == pytest.approx(16 / train["timed_s"])
    assert ddpm["setting"].startswith("20 steps") and ddim["setting"].startswith("3 steps")
    assert ddpm["extrapolated"] and ddpm["seconds_for_1000"] == pytest.approx(100 * ddpm["timed_s"])
    assert json.loads((tmp_path / "bench.json").read_text())["params"] == sum(p.numel() for p in unet.parameters())
    assert "| train | batch 8, 2 timed steps, rng host |" in capsys.readouterr().out


def test_benchmark_rejects_bad_image_counts():
    with pytest.raises(ValueError, match="multiple of 10"):
        bench_cfg.parse_args(["--num_images", "15"])
