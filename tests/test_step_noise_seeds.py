"""Step noise never replays the initial noise: the seeds the commands use, and the pipelines' refusal."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from pipelines.conditional_ddpm.course_output import image_seed
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import ConditionalDDPMPipeline
from pipelines.seeds import step_noise_generator, step_noise_seed
from tests import tiny_models


def test_step_noise_seed_is_deterministic_distinct_and_checked():
    assert step_noise_seed(0) == step_noise_seed(0)
    seeds = {step_noise_seed(seed, index) for seed in range(20) for index in range(50)}
    assert len(seeds) == 1000 and min(seeds) >= 2**32  # never a small seed such as an image's
    assert step_noise_seed(0, 1) != step_noise_seed(1, 0)
    first = torch.randn(4, generator=step_noise_generator(3))
    assert torch.equal(first, torch.randn(4, generator=step_noise_generator(3)))
    assert not torch.allclose(first, torch.randn(4, generator=torch.Generator().manual_seed(3)), atol=0.1)
    for bad in [(), (-1,), (1.5,), (True,)]:
        with pytest.raises(ValueError, match="non-negative integers"):
            step_noise_seed(*bad)


def conditional_pipe(scheduler_class):
    unet = tiny_models.tiny_unet(num_class_embeds=11).eval()
    pipe = ConditionalDDPMPipeline(unet, scheduler_class(num_train_timesteps=20), null_class_id=10)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_conditional_pipeline_refuses_a_step_generator_seeded_like_the_latents():
    pipe = conditional_pipe(DDPMScheduler)
    shape = (2, *pipe.sample_shape())
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(image_seed(0, 3, 1)))
    with pytest.raises(ValueError, match="noise for step 1 repeats the initial noise of image 0"):
        pipe(
            digit=3,
            num_images_per_digit=2,
            num_inference_steps=5,
            latents=latents,
            generator=torch.Generator().manual_seed(image_seed(0, 3, 1)),
        )
    # the commands' step generator, and DDIM (eta = 0 here: it draws nothing), sample
    pipe(
        digit=3,
        num_images_per_digit=2,
        num_inference_steps=5,
        latents=latents,
        generator=step_noise_generator(image_seed(0, 3, 1)),
    )
    ddim = conditional_pipe(DDIMScheduler)
    ddim(
        digit=3,
        num_images_per_digit=2,
        num_inference_steps=5,
        latents=latents,
        generator=torch.Generator().manual_seed(image_seed(0, 3, 1)),
    )
