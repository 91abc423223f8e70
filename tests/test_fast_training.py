"""The GPU fast path of the diffusion training loop, checked on the CPU.

The reference weights in tests/data were made by training/train_cfg.py at commit 580fec0, before the
loop moved its data, randomness and loss bookkeeping onto the device (tests/data/cfg_tiny_reference.json
holds the command). On the CPU the new loop must reproduce them.
"""

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training import train_cfg
from training.diffusion_checkpoints import EMA_FOLDER, list_checkpoints
from training.diffusion_step import EpochSampler, StepRandomness, micro_step_generator

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(autouse=True)
def one_thread():
    """The reference was made with one CPU thread. With more, reductions round differently, and Adam turns
    that rounding into full-size steps of the attention key biases (whose true gradient is zero)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_cpu_training_reproduces_the_weights_of_the_code_before_the_fast_path(tmp_path):
    reference = json.loads((DATA / "cfg_tiny_reference.json").read_text())
    args = train_cfg.parse_args([*reference["argv"].split(), "--output_dir", str(tmp_path)])
    result = train_cfg.main(args)
    new = load_file(tmp_path / "unet" / "diffusion_pytorch_model.safetensors")
    old = load_file(DATA / "cfg_tiny_reference_unet.safetensors")
    assert new.keys() == old.keys()
    for name in old:  # the same draws in the same order: only float rounding may differ (foreach EMA)
        torch.testing.assert_close(new[name], old[name], rtol=1e-5, atol=1e-6, msg=name)
    old_losses = [loss for _, loss in reference["loss_history"]]
    new_losses = [loss for _, loss in result.loss_history]
    assert len(new_losses) == len(old_losses)
    assert all(abs(a - b) < 1e-6 for a, b in zip(new_losses, old_losses))


def test_checkpoints_hold_the_ema_as_safetensors_and_no_pickle(tmp_path):
    reference = json.loads((DATA / "cfg_tiny_reference.json").read_text())
    argv = reference["argv"].replace("--checkpointing_steps 100", "--checkpointing_steps 3").split()
    train_cfg.main(train_cfg.parse_args([*argv, "--output_dir", str(tmp_path)]))
    assert [step for step, _ in list_checkpoints(tmp_path)] == [3, 6]  # kept by the export
    checkpoint = tmp_path / "checkpoint-6"
    assert not list(checkpoint.glob("custom_checkpoint_*"))
    ema_config = json.loads((checkpoint / EMA_FOLDER / "config.json").read_text())
    assert ema_config["optimization_step"] == 6 and ema_config["decay"] == 0.999
    ema = load_file(checkpoint / EMA_FOLDER / "diffusion_pytorch_model.safetensors")
    exported = load_file(tmp_path / "unet" / "diffusion_pytorch_model.safetensors")
    for name in exported:  # the exported weights are the EMA weights of the last step
        torch.testing.assert_close(exported[name], ema[name], rtol=0, atol=0)


def test_a_time_budget_stops_at_a_logging_step_and_says_so(tmp_path):
    reference = json.loads((DATA / "cfg_tiny_reference.json").read_text())
    argv = [*reference["argv"].split(), "--output_dir", str(tmp_path), "--max_train_seconds", "1e-9"]
    argv[argv.index("--logging_steps") + 1] = "2"
    result = train_cfg.main(train_cfg.parse_args(argv))
    assert result.stopped_by_time and result.global_step == 2
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["stopped_by_time"] and summary["global_step"] == 2


def test_reseeding_one_generator_gives_the_draws_of_a_fresh_one():
    randomness = StepRandomness(seed=3, process_index=1)
    for step in (0, 7, 7, 123):
        a = torch.randn(5, generator=randomness.for_micro_step(step))
        b = torch.randn(5, generator=micro_step_generator(3, 1, step))
        assert torch.equal(a, b)
    assert not torch.equal(
        torch.randn(5, generator=micro_step_generator(3, 0, 7)), torch.randn(5, generator=micro_step_generator(3, 1, 7))
    )


def test_epoch_sampler_splits_each_epoch_between_processes_without_overlap():
    samplers = [EpochSampler(40, 4, 2, rank, seed=0) for rank in range(2)]
    assert samplers[0].batches_per_epoch == 5
    seen = torch.cat([s.indices(step) for step in range(5) for s in samplers])
    assert sorted(seen.tolist()) == list(range(40))  # one epoch covers every image once
    assert not torch.equal(samplers[0].indices(0), samplers[0].indices(5))  # a new permutation each epoch


def test_publish_keeps_the_checkpoints_and_replaces_the_old_export(tmp_path):
    from training.diffusion_export import publish

    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "stale.txt").write_text("from an earlier export")
    publish(tmp_path, lambda staging: (staging / "model_index.json").write_text("{}"))
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-2", "model_index.json"]
    assert (tmp_path / "checkpoint-2" / "model.safetensors").read_bytes() == b"weights"
