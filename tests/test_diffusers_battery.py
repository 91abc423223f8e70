"""diffusers' common pipeline battery (`PipelineTesterMixin`, tests/diffusers_battery) against both pipelines.

The components are built as diffusers' own DDPM/DDIM tests build theirs (tests/pipelines/ddpm/test_ddpm.py,
tests/pipelines/ddim/test_ddim.py: a `UNet2DModel` with `block_out_channels=(4, 8)`, `sample_size=8`, seeded with
`torch.manual_seed(0)`, 2 inference steps on the CPU). Every mixin test runs unless it cannot apply to these
pipelines; those are skipped here with the reason, or by the mixin's own decorators where they need an accelerator
(CUDA/XPU, accelerate's offloading, xformers).
"""

import gc
import inspect
import unittest

import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor

from pipelines import ConditionalDDPMPipeline, DDIMFromNoisePipeline, ddim_scheduler
from tests.diffusers_battery.pipelines_common import PipelineTesterMixin
from tests.diffusers_battery.testing_utils import torch_device

NO_PROMPT = "no text encoder: the pipeline is conditioned on class labels (or nothing), not on a prompt"
NOT_STABLE_DIFFUSION = "not a StableDiffusionMixin pipeline: there is no VAE, the UNet works on pixels"
NO_OPTIONAL_COMPONENTS = "the pipeline has no optional components (_optional_components is empty)"
# diffusers' tests/pipelines/pipeline_params.py, which DiTPipeline's tests use
CLASS_CONDITIONED_IMAGE_GENERATION_PARAMS = frozenset(["class_labels"])
CLASS_CONDITIONED_IMAGE_GENERATION_BATCH_PARAMS = frozenset(["class_labels"])


def dummy_unet(num_class_embeds=None):
    """diffusers' dummy unconditional UNet of its DDPM/DDIM tests, with a class embedding when asked for."""
    torch.manual_seed(0)
    return UNet2DModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=8,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        num_class_embeds=num_class_embeds,
    )


def device_generator(device, seed):
    if str(device).startswith("mps"):  # as diffusers' tests: MPS has no device generators
        return torch.manual_seed(seed)
    return torch.Generator(device=device).manual_seed(seed)


class FastOnTheCPU:
    """One torch thread and a frozen import heap for the class's tests, restored after them.

    Measured on the 2 shared cores: 4 of the battery's tests took 12.6 s as they come, 0.44 s like this. The images
    are 8x8, so a second thread only adds synchronisation; and the mixin calls gc.collect() before and after every
    test (to free accelerator memory), which walks every object the imports made unless they are frozen.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        gc.freeze()

    @classmethod
    def tearDownClass(cls):
        gc.unfreeze()
        torch.set_num_threads(cls._torch_threads)
        super().tearDownClass()


class NeitherPromptNorVAE:
    """The mixin tests that no pipeline of this project can meet, skipped with the reason, for both."""

    @unittest.skip(NO_OPTIONAL_COMPONENTS)
    def test_save_load_optional_components(self):
        pass

    @unittest.skip(NO_PROMPT)
    def test_encode_prompt_works_in_isolation(self):
        pass

    @unittest.skip(NOT_STABLE_DIFFUSION)
    def test_StableDiffusionMixin_component(self):
        pass


class ConditionalDDPMPipelineBatteryTests(FastOnTheCPU, NeitherPromptNorVAE, PipelineTesterMixin, unittest.TestCase):
    pipeline_class = ConditionalDDPMPipeline
    params = frozenset(["digit", "guidance", "guidance_scale", "num_images_per_digit", "capture_timesteps"])
    batch_params = frozenset(["digit"])
    # num_images_per_prompt is spelled num_images_per_digit here (a digit is the prompt)
    required_optional_params = PipelineTesterMixin.required_optional_params - {"num_images_per_prompt"}
    test_layerwise_casting = True
    test_group_offloading = True
    label_argument = "digit"

    def get_dummy_components(self):
        return {"unet": dummy_unet(num_class_embeds=11), "scheduler": DDPMScheduler(), "null_class_id": 10}

    def get_dummy_inputs(self, device, seed=0):
        # DDPM draws noise in every step, so the generator matters after x_T too; guidance stays at its default
        # so that the mixin's guidance_scale tests can set it
        return {
            "digit": 3,
            "generator": device_generator(device, seed),
            "num_inference_steps": 2,
            "output_type": "np",
        }

    def test_num_images_per_prompt(self):
        # The mixin's test, with this pipeline's name for the argument (the mixin returns early without
        # `num_images_per_prompt`): batch_size digits x num_images_per_digit images.
        self.assertIn("num_images_per_digit", inspect.signature(self.pipeline_class.__call__).parameters)
        pipe = self.pipeline_class(**self.get_dummy_components()).to(torch_device)
        pipe.set_progress_bar_config(disable=None)
        for batch_size in (1, 2):
            for num_images_per_digit in (1, 2):
                inputs = self.get_dummy_inputs(torch_device)
                inputs[self.label_argument] = batch_size * [inputs[self.label_argument]]
                images = pipe(**inputs, num_images_per_digit=num_images_per_digit)[0]
                self.assertEqual(images.shape[0], batch_size * num_images_per_digit)


class ConditionalDDPMPipelineClassLabelsBatteryTests(ConditionalDDPMPipelineBatteryTests):
    """The same pipeline set up as diffusers sets up DiTPipeline's tests (tests/pipelines/dit/test_dit.py): the class
    ids in `class_labels`, `[1]`, batched by the mixin as `[[1], [1], ...]`. `latents` stays among the required
    optional arguments (DiT's tests drop it, since DiTPipeline has none; this pipeline takes it)."""

    params = CLASS_CONDITIONED_IMAGE_GENERATION_PARAMS
    batch_params = CLASS_CONDITIONED_IMAGE_GENERATION_BATCH_PARAMS
    label_argument = "class_labels"

    def get_dummy_inputs(self, device, seed=0):
        return {
            "class_labels": [1],
            "generator": device_generator(device, seed),
            "num_inference_steps": 2,
            "output_type": "np",
        }


class DDIMFromNoisePipelineBatteryTests(FastOnTheCPU, NeitherPromptNorVAE, PipelineTesterMixin, unittest.TestCase):
    pipeline_class = DDIMFromNoisePipeline
    params = frozenset(["noise", "eta"])
    batch_params = frozenset(["noise"])
    # the initial noise is the required first argument `noise` (the pipeline's point), one image per noise
    required_optional_params = PipelineTesterMixin.required_optional_params - {"num_images_per_prompt", "latents"}
    test_layerwise_casting = True
    test_group_offloading = True

    def get_dummy_components(self):
        # the course preset: float64 betas and min-max images, the settings a save/load must keep
        return {
            "unet": dummy_unet(),
            "scheduler": ddim_scheduler("course"),
            "image_normalization": "minmax",
            "float64_betas": True,
        }

    def get_dummy_inputs(self, device, seed=0):
        # DDIMPipeline's test inputs (tests/pipelines/ddim/test_ddim.py), with x_T given as `noise`: drawn as
        # DDIMPipeline draws it, from a generator seeded like the call's own. eta = 1, so that the same generator
        # then draws the noise of every step.
        return {
            "noise": randn_tensor((1, 3, 8, 8), generator=device_generator(device, seed), device=torch.device(device)),
            "eta": 1.0,
            "generator": device_generator(device, seed),
            "num_inference_steps": 2,
            "output_type": "np",
        }

    @unittest.skip("one image per given noise: the batch is the noises given (batch_params), not a count")
    def test_num_images_per_prompt(self):
        pass

    @unittest.skip("unconditional: there is no classifier-free guidance (no guidance_scale)")
    def test_cfg(self):
        pass

    @unittest.skip("unconditional: there is no classifier-free guidance (no guidance_scale)")
    def test_callback_cfg(self):
        pass
