"""The diffusion training scripts, run for a few steps on tiny UNets and the embedded data (CPU, offline)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import DDPMPipeline, UNet2DModel
from huggingface_hub import ModelCard
from launch_training import launch
from safetensors.torch import load_file

from pipelines import ConditionalDDPMPipeline
from training import train_cfg, train_ddpm
from training.diffusion import cards

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--block_out_channels",
    "8",
    "16",
    "--norm_num_groups",
    "4",
    "--train_batch_size",
    "8",
    "--logging_steps",
    "1",
    "--report_to",
    "none",
    "--lr_warmup_steps",
    "1",
]
TINY_CFG = [
    *TINY,
    "--max_train_images",
    "64",
    "--sample_images_per_digit",
    "1",
    "--sample_inference_steps",
    "2",
]


def unet_weights(folder: Path) -> dict:
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def launch_and_succeed(script: str, args: list[str], num_processes: int):
    result = launch(script, args, num_processes, port=29517)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow  # two real accelerate launches of 2 processes: about 25 s
def test_accelerate_launch_two_processes_and_exact_resume(tmp_path):
    args = [
        *TINY_CFG,
        "--max_train_steps",
        "4",
        "--checkpointing_steps",
        "2",
        "--save_images_steps",
        "4",
        "--gradient_accumulation_steps",
        "2",
    ]
    launch_and_succeed("train_cfg.py", ["--output_dir", str(tmp_path / "full"), *args], num_processes=2)
    summary = json.loads((tmp_path / "full" / "train_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["global_step"] == 4 and summary["images_seen"] == 4 * 2 * 8 * 2
    assert (tmp_path / "full" / "samples" / "step-000004.png").is_file()

    # Resume an interrupted copy from checkpoint-2: it must end with exactly the same (EMA) weights.
    (tmp_path / "resumed").mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-2", tmp_path / "resumed" / "checkpoint-2")
    result = launch_and_succeed(
        "train_cfg.py",
        ["--output_dir", str(tmp_path / "resumed"), *args, "--resume_from_checkpoint", "latest"],
        num_processes=2,
    )
    assert "resumed from" in result.stdout + result.stderr
    full, resumed = unet_weights(tmp_path / "full"), unet_weights(tmp_path / "resumed")
    assert full.keys() == resumed.keys()
    for name in full:
        torch.testing.assert_close(resumed[name], full[name], rtol=0, atol=0, msg=name)

    pipe = ConditionalDDPMPipeline.from_pretrained(tmp_path / "resumed")
    assert pipe.unet.config.num_class_embeds == 11 and pipe.config.null_class_id == 10
    assert pipe.scheduler.config.num_train_timesteps == 400
    # the exported default sampler is the fast one, on the trained schedule
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.scheduler.config.beta_end == 0.02 and pipe.scheduler.config.timestep_spacing == "trailing"
    card = ModelCard.load(tmp_path / "resumed" / "README.md")
    assert card.data.library_name == "diffusers" and card.data.datasets == ["Mike0307/MNIST-M"]
    assert "![samples](samples.png)" in card.text and "--max_train_steps 4" in card.text


def test_training_lowers_the_loss_and_keeps_the_checkpoint_limit(tmp_path):
    args = train_cfg.parse_args(
        [
            *TINY_CFG,
            "--output_dir",
            str(tmp_path),
            "--max_train_steps",
            "12",
            "--learning_rate",
            "3e-3",
            "--checkpointing_steps",
            "3",
            "--checkpoints_total_limit",
            "2",
            "--save_images_steps",
            "100",
            "--logging_steps",
            "3",
        ]
    )
    train_cfg.main(args)
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.model_name == tmp_path.name  # named after the folder, not the staging folder it was written in
    # the folder's records hold everything its card needs: `python -m training.cfg_card` rebuilds the same card
    assert str(cards.conditional_ddpm_card(tmp_path)) == str(card)
    history = json.loads((tmp_path / "train_summary.json").read_text())["loss_history"]
    losses = [loss for _, loss in history]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-9"]


def test_train_ddpm_writes_a_ddpm_pipeline_folder(tmp_path):
    args = train_ddpm.parse_args(
        [
            *TINY,
            "--output_dir",
            str(tmp_path),
            "--max_train_steps",
            "3",
            "--resolution",
            "16",
            "--channels",
            "1",
            "--num_train_timesteps",
            "50",
            "--sample_images",
            "2",
            "--sample_inference_steps",
            "2",
            "--checkpointing_steps",
            "3",
            "--save_images_steps",
            "3",
        ]
    )
    train_ddpm.main(args)
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    unet = UNet2DModel.from_pretrained(tmp_path / "unet")
    assert unet.config.in_channels == 1 and unet.config.sample_size == 16 and unet.config.num_class_embeds is None
    scheduler = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["num_train_timesteps"] == 50 and scheduler["beta_schedule"] == "linear"
    assert scheduler["beta_start"] == 1e-4 and scheduler["beta_end"] == 0.02
    pipe = DDPMPipeline.from_pretrained(tmp_path)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(batch_size=1, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (16, 16)
    # a local training folder is no Hub dataset id: the card names it in its measured training loss instead
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "diffusers" and card.data.eval_results[0].metric_type == "loss"
    assert card.data.model_name == tmp_path.name and str(cards.ddpm_card(tmp_path)) == str(card)


def test_train_ddpm_reads_an_image_folder(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (25, 25), (i * 80, 10, 200)).save(tmp_path / f"{i}.png")
    images = train_ddpm.load_training_images(tmp_path, resolution=32, channels=1)
    assert images.shape == (3, 1, 32, 32) and images.dtype == torch.uint8
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no parquet files and no images"):
        train_ddpm.load_training_images(tmp_path / "empty", 32, 1)


def test_push_to_hub_offline_fails_clearly_and_keeps_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = train_cfg.parse_args(
        [
            *TINY_CFG,
            "--output_dir",
            str(tmp_path),
            "--max_train_steps",
            "1",
            "--save_images_steps",
            "100",
            "--push_to_hub",
            "--hub_model_id",
            "me/cfg",
        ]
    )
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE"):
        train_cfg.main(args)
    ConditionalDDPMPipeline.from_pretrained(tmp_path)  # the local folder is complete


@pytest.mark.parametrize(
    "argv, error, message",
    [
        (["--label_dropout", "1.0"], ValueError, "label_dropout"),
        (["--block_out_channels", "8", "15"], ValueError, "multiples of --norm_num_groups"),
        (["--max_train_steps", "0"], ValueError, "max_train_steps"),
        (["--push_to_hub"], ValueError, "hub_model_id"),
        (
            ["--resume_from_checkpoint", "nowhere/checkpoint-7"],
            FileNotFoundError,
            "not a checkpoint-N folder",
        ),
        (["--train_batch_size", "4096"], ValueError, "cannot fill one batch"),
    ],
)
def test_bad_training_arguments(tmp_path, argv, error, message):
    with pytest.raises(error, match=message):
        train_cfg.main(train_cfg.parse_args([*TINY_CFG, "--output_dir", str(tmp_path), *argv]))
