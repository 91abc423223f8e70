"""The step-noise seeds the commands use, and the conditional pipeline's generator stream: the draw of x_T first,
as in diffusers, whether or not `latents` is given."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, LCMScheduler

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


def conditional_pipe(scheduler):
    unet = tiny_models.tiny_unet(num_class_embeds=11).eval()
    pipe = ConditionalDDPMPipeline(unet, scheduler, null_class_id=10)
    pipe.set_progress_bar_config(disable=True)
    return pipe


STOCHASTIC_AND_NOT = {
    "ddpm": lambda: DDPMScheduler(num_train_timesteps=20),  # draws noise at every step
    "lcm": lambda: LCMScheduler(num_train_timesteps=20, original_inference_steps=10),  # between steps
    "ddim": lambda: DDIMScheduler(num_train_timesteps=20),  # eta = 0: draws nothing
}


@pytest.mark.parametrize("scheduler", sorted(STOCHASTIC_AND_NOT))
def test_latents_and_generator_from_one_seed_give_the_call_without_latents(scheduler):
    """x_T drawn from seed s, and the generator seeded s: the images of the call that draws x_T itself."""
    pipe = conditional_pipe(STOCHASTIC_AND_NOT[scheduler]())
    call = dict(digit=[3, 5], num_images_per_digit=2, num_inference_steps=4, output_type="pt")
    drawn = pipe(**call, generator=torch.manual_seed(7)).images
    latents = torch.randn(4, *pipe.sample_shape(), generator=torch.manual_seed(7))
    given = pipe(**call, latents=latents, generator=torch.manual_seed(7)).images
    assert torch.equal(given, drawn)
    # one generator per image: randn_tensor draws image i from generator i, then each step's noise of image i
    seeds = [image_seed(0, 3, 1), image_seed(0, 3, 2), image_seed(0, 5, 1), image_seed(0, 5, 2)]

    def generators():
        return [torch.Generator().manual_seed(seed) for seed in seeds]

    drawn = pipe(**call, generator=generators()).images
    latents = torch.cat([torch.randn(1, *pipe.sample_shape(), generator=g) for g in generators()])
    assert torch.equal(pipe(**call, latents=latents, generator=generators()).images, drawn)
    if scheduler != "ddim":  # the steps' noise comes after x_T's draw: another generator, other images
        other = pipe(**call, latents=latents, generator=torch.manual_seed(8)).images
        assert not torch.allclose(other, drawn, atol=1e-3)


def test_the_commands_step_generator_samples_deterministically():
    pipe = conditional_pipe(DDPMScheduler(num_train_timesteps=20))
    latents = torch.randn(2, *pipe.sample_shape(), generator=torch.Generator().manual_seed(image_seed(0, 3, 1)))
    call = dict(digit=3, num_images_per_digit=2, num_inference_steps=5, latents=latents, output_type="pt")
    first = pipe(**call, generator=step_noise_generator(image_seed(0, 3, 1))).images
    assert torch.equal(first, pipe(**call, generator=step_noise_generator(image_seed(0, 3, 1))).images)
