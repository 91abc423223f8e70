"""The diffusion training loop on the CPU, checked against a recorded reference run and its draw contract.

tests/data/cfg_tiny_reference.json holds a tiny train_cfg.py run (its command and per-step losses) and
cfg_tiny_reference_unet.safetensors the weights it exported. The loop draws its randomness on the training
device; on the CPU the draws must be those of the reference, in the same order, because the shipped models and
their exact resume rest on that contract. What is compared, and why not every weight bit for bit, is said where
it is compared: float rounding differs between CPU models and thread counts, a different draw does much more.
"""

import json
import os
from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import load_file

from adapters import decode_digits, load_digits
from training import train_cfg
from training.checkpoints import list_checkpoints, read_entry
from training.diffusion.args import build_unet
from training.diffusion.step import EpochSampler, StepRandomness, micro_step_generator
from training.run_folder import publish

DATA = Path(__file__).resolve().parent / "data"
REFERENCE = json.loads((DATA / "cfg_tiny_reference.json").read_text())


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The reference command run once, with the UNet's input recorded at every training micro-step."""
    inputs = []
    forward = UNet2DModel.forward

    def recording_forward(unet, sample, timestep, class_labels=None, **kwargs):
        if unet.training:  # not the sample grids drawn for the logs and the export
            inputs.append((sample.detach().clone(), timestep.clone(), class_labels.clone()))
        return forward(unet, sample, timestep, class_labels=class_labels, **kwargs)

    output_dir = tmp_path_factory.mktemp("reference")
    args = train_cfg.parse_args([*REFERENCE["argv"].split(), "--output_dir", str(output_dir)])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(UNet2DModel, "forward", recording_forward)
        result = train_cfg.main(args)
    return args, result, inputs, load_file(output_dir / "unet" / "diffusion_pytorch_model.safetensors")


def test_each_micro_step_draws_noise_then_timesteps_then_label_dropout(reference_run):
    """The contract of training/diffusion/step.py, rebuilt here from its parts: micro-step i draws from the
    generator of (seed, process, i), first the noise, then t, then the dropout mask. Timesteps and labels are
    integers and must match exactly; the noisy images are made by the same operations on the same machine, so
    only a bound far below the size of any real difference (a unit noise sample) is allowed."""
    args, _, inputs, _ = reference_run
    images, labels = decode_digits(load_digits("mnistm", source=None, split="train"), image_size=args.resolution)
    images, labels = images[: args.max_train_images], labels[: args.max_train_images]
    sampler = EpochSampler(len(images), args.train_batch_size, 1, 0, args.seed)
    scheduler = DDPMScheduler(args.num_train_timesteps, args.beta_start, args.beta_end, beta_schedule="linear")
    assert len(inputs) == args.max_train_steps * args.gradient_accumulation_steps
    dropped = 0
    for micro_step, (noisy, timesteps, class_labels) in enumerate(inputs):
        index = sampler.indices(micro_step)
        generator = micro_step_generator(args.seed, 0, micro_step)
        noise = torch.randn(noisy.shape, generator=generator)
        expected_t = torch.randint(0, args.num_train_timesteps, (len(index),), generator=generator)
        drop = torch.rand(len(index), generator=generator) < args.label_dropout
        assert torch.equal(timesteps, expected_t), f"micro-step {micro_step}: other timesteps"
        assert torch.equal(class_labels, torch.where(drop, train_cfg.NULL_CLASS_ID, labels[index]))
        clean = images[index].float() / 127.5 - 1
        torch.testing.assert_close(noisy, scheduler.add_noise(clean, noise, expected_t), rtol=0, atol=1e-6)
        dropped += int(drop.sum())
    assert dropped > 0  # the dropout mask was really exercised


def test_per_step_losses_are_those_of_the_reference(reference_run):
    """Each logged loss is the mean of 2 x 18,816 squared errors. Rounding (another CPU's vector unit, another
    thread count) moves it by about 1e-7 relative; a draw in another order moved the losses of this run by
    6e-4 to 2e-2 (measured by swapping noise and t). 1e-5 relative separates the two by 100x on each side."""
    _, result, _, _ = reference_run
    steps, losses = zip(*result.loss_history)
    reference_steps, reference_losses = zip(*REFERENCE["loss_history"])
    assert steps == reference_steps
    assert losses == pytest.approx(reference_losses, rel=1e-5)


def weights_without_a_gradient(args) -> set[str]:
    """Names of the UNet tensors whose gradient is zero in exact arithmetic, found by one backward pass.

    The attention key biases: a bias on every key adds the same q.b to all scores of a query, which the
    softmax removes. Their computed gradient is pure rounding (about 1e-10 here against 1e-5 for the smallest
    real one), and Adam divides it by its own root mean square, so each step moves them by a full learning
    rate in a direction that depends on the CPU. Nothing downstream sees them, so they are left out."""
    torch.manual_seed(0)
    unet = build_unet(args, channels=3, num_class_embeds=train_cfg.NULL_CLASS_ID + 1)
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(8, 3, args.resolution, args.resolution, generator=generator)
    timesteps = torch.randint(0, args.num_train_timesteps, (8,), generator=generator)
    class_labels = torch.randint(0, train_cfg.NULL_CLASS_ID + 1, (8,), generator=generator)
    unet(sample, timesteps, class_labels=class_labels).sample.square().mean().backward()
    largest = {name: p.grad.abs().max().item() for name, p in unet.named_parameters()}
    return {name for name, value in largest.items() if value < 1e-6 * max(largest.values())}


def test_weights_with_a_gradient_are_those_of_the_reference(reference_run):
    """On this project's CPUs the exported EMA weights with a real gradient differ from the reference by at
    most 6e-7 (rounding carried through 6 Adam steps of lr 3e-3); a draw in another order moves them by about
    1e-2. atol 1e-5 is 20x above the first and 1000x below the second."""
    args, _, _, new = reference_run
    old = load_file(DATA / "cfg_tiny_reference_unet.safetensors")
    assert new.keys() == old.keys()
    skipped = weights_without_a_gradient(args)
    assert skipped and all(name.endswith("to_k.bias") for name in skipped)  # the key biases and nothing else
    for name in sorted(old.keys() - skipped):
        torch.testing.assert_close(new[name], old[name], rtol=0, atol=1e-5, msg=name)


def test_checkpoints_hold_the_ema_as_safetensors_and_no_pickle(tmp_path):
    argv = REFERENCE["argv"].replace("--checkpointing_steps 100", "--checkpointing_steps 3").split()
    train_cfg.main(train_cfg.parse_args([*argv, "--output_dir", str(tmp_path)]))
    assert [step for step, _ in list_checkpoints(tmp_path)] == [3, 6]  # kept by the export
    checkpoint = tmp_path / "checkpoint-6"
    assert {p.suffix for p in checkpoint.iterdir()} == {".json", ".safetensors"}
    ema = read_entry(checkpoint, "ema")
    assert ema["optimization_step"] == 6 and ema["decay"] == 0.999
    exported = list(UNet2DModel.from_pretrained(tmp_path / "unet").named_parameters())
    assert len(ema["shadow_params"]) == len(exported)
    for (name, weight), shadow in zip(exported, ema["shadow_params"]):  # the export is the EMA of the last step
        torch.testing.assert_close(weight.detach(), shadow, rtol=0, atol=0, msg=name)


def test_a_time_budget_stops_at_a_logging_step_and_says_so(tmp_path):
    argv = [*REFERENCE["argv"].split(), "--output_dir", str(tmp_path), "--max_train_seconds", "1e-9"]
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


def test_publish_replaces_the_exported_names_and_keeps_everything_else(tmp_path):
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "model_index.json").write_text("old export")
    (tmp_path / "thesis.tex").write_text("a user's file")
    publish(tmp_path, lambda staging: (staging / "model_index.json").write_text("{}"))
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-2", "model_index.json", "thesis.tex"]
    assert (tmp_path / "model_index.json").read_text() == "{}"
    assert (tmp_path / "checkpoint-2" / "model.safetensors").read_bytes() == b"weights"
    assert (tmp_path / "thesis.tex").read_text() == "a user's file"
