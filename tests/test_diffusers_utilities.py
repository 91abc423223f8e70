"""What diffusers users reach for, on both pipelines, on the CPU: bfloat16, torch.compile, the progress bar, and
loading with only diffusers (trust_remote_code), `dtype=` in every loader, offloading without an accelerator, and
`__call__` docstrings that diffusers' own CLI reads."""

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DiffusionPipeline

from pipelines import ConditionalDDPMPipeline, DDIMFromNoisePipeline
from tests.test_cfg_pipeline import get_dummy_components
from tests.test_ddim_pipeline import make_pipe

# bfloat16 keeps 8 bits of mantissa: after 4 steps the [0, 1] images of the tiny models differ from float32's by
# 0.008 at most (measured); a pipeline that mixed dtypes or lost the guidance would be off by far more.
BFLOAT16_TOLERANCE = 0.03
# inductor fuses and reorders float32 sums: measured 0.0027 at most on the [0, 1] images after 4 DDIM steps
# (x0 = (x - sqrt(1 - a) eps) / sqrt(a) magnifies the UNet's rounding at the noisy steps)
COMPILE_TOLERANCE = 0.01
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def digits_pipe():
    pipe = ConditionalDDPMPipeline(**get_dummy_components())
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # no step noise: only x_T matters
    pipe.set_progress_bar_config(disable=True)
    return pipe


def digits(pipe, **kwargs):
    generator = torch.Generator().manual_seed(0)
    return pipe(digit=[1, 7], num_inference_steps=4, generator=generator, output_type="np", **kwargs).images


def faces(pipe, **kwargs):
    noise = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    return pipe(noise, num_inference_steps=4, output_type="np", **kwargs).images


def unet_input_dtypes(pipe, run):
    dtypes = []
    hook = pipe.unet.register_forward_hook(lambda module, inputs, output: dtypes.append(inputs[0].dtype))
    images = run(pipe)
    hook.remove()
    return images, set(dtypes)


@pytest.mark.parametrize("name", ["digits", "faces"])
def test_bfloat16_sampling_after_pipe_to(name, digits_pipe):
    pipe, run = (digits_pipe, digits) if name == "digits" else (make_pipe("course"), faces)
    float32 = run(pipe)
    assert pipe.to(torch.bfloat16) is pipe and pipe.unet.dtype == torch.bfloat16
    bfloat16, dtypes = unet_input_dtypes(pipe, run)
    assert dtypes == {torch.bfloat16}  # every step runs in bfloat16, not float32 after a silent cast
    assert bfloat16.dtype == np.float32 and bfloat16.shape == float32.shape  # images come back as float32
    assert 0 < np.abs(bfloat16 - float32).max() < BFLOAT16_TOLERANCE


@pytest.mark.slow  # inductor compiles C++ kernels: about a minute on a free 2-core CPU, several on a busy one
def test_torch_compile_of_the_unet_gives_the_same_images(digits_pipe):
    eager = digits(digits_pipe)
    digits_pipe.unet = torch.compile(digits_pipe.unet)
    assert digits_pipe.config.unet == ("diffusers", "UNet2DModel")  # still saved as the plain model
    compiled = digits(digits_pipe)
    np.testing.assert_allclose(compiled, eager, rtol=0, atol=COMPILE_TOLERANCE)


@pytest.mark.parametrize("name", ["digits", "faces"])
def test_set_progress_bar_config(name, digits_pipe, capsys):
    pipe, run = (digits_pipe, digits) if name == "digits" else (make_pipe("course"), faces)
    pipe.set_progress_bar_config(desc="denoising", disable=False)
    run(pipe)
    bar = capsys.readouterr().err
    assert "denoising" in bar and "4/4" in bar
    pipe.set_progress_bar_config(disable=True)
    run(pipe)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", ["digits", "faces"])
def test_only_diffusers_with_trust_remote_code_gives_the_same_images(name, digits_pipe, tmp_path):
    pipe, run = (digits_pipe, digits) if name == "digits" else (make_pipe("diffusers"), faces)
    pipe.save_pretrained(tmp_path)
    remote = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
    remote.set_progress_bar_config(disable=True)
    # the folder's copy of the pipeline file, imported by diffusers, not this package's module
    assert type(remote).__name__ == type(pipe).__name__ and type(remote).__module__.startswith("diffusers_modules")
    assert not isinstance(remote, (ConditionalDDPMPipeline, DDIMFromNoisePipeline))
    np.testing.assert_array_equal(run(remote), run(pipe))


# ---- the rest of a diffusers user's day: offloading, dtype=, the documented signature ----

HUB_CARDS = REPO_ROOT / "hub_cards"


def shipped_loaders(bare_unet_folder):
    """Every loader of the project, each with the dtype of what it loaded."""
    from pipelines.dann.modeling_dann import DANNModel
    from pipelines.digit_classifier.modeling_digit_classifier import DigitClassifier

    return {
        "ConditionalDDPMPipeline": lambda **kw: (
            ConditionalDDPMPipeline.from_pretrained(HUB_CARDS / "cfg-mnistm-small", **kw).unet.dtype
        ),
        "DDIMFromNoisePipeline (saved)": lambda **kw: (
            DDIMFromNoisePipeline.from_pretrained(HUB_CARDS / "ddpm-lfw-faces", **kw).unet.dtype
        ),
        "DDIMFromNoisePipeline (preset)": lambda **kw: (
            DDIMFromNoisePipeline.from_pretrained(HUB_CARDS / "ddpm-lfw-faces", preset="diffusers", **kw).unet.dtype
        ),
        "DDIMFromNoisePipeline (bare UNet)": lambda **kw: (
            DDIMFromNoisePipeline.from_pretrained(bare_unet_folder, **kw).unet.dtype
        ),
        "DANNModel": lambda **kw: DANNModel.from_pretrained(HUB_CARDS / "dann-mnistm-usps", **kw).dtype,
        "DigitClassifier": lambda **kw: (
            DigitClassifier.from_pretrained(HUB_CARDS / "mnistm-digit-classifier", **kw).dtype
        ),
    }


def test_every_loader_takes_dtype_without_a_deprecation(tmp_path):
    import warnings

    from diffusers import UNet2DModel

    UNet2DModel.from_pretrained(HUB_CARDS / "ddpm-lfw-faces", subfolder="unet").save_pretrained(tmp_path)
    for name, load in shipped_loaders(tmp_path).items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert load(dtype=torch.bfloat16) == torch.bfloat16, name
        assert not [w for w in caught if "dtype" in str(w.message)], name
    # the bare-UNet path behaves as diffusers' from_pretrained: torch_dtype is deprecated, both at once refused
    with pytest.warns(FutureWarning, match="`torch_dtype` is deprecated"):
        assert DDIMFromNoisePipeline.from_pretrained(tmp_path, torch_dtype=torch.bfloat16).unet.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="give dtype or torch_dtype"):
        DDIMFromNoisePipeline.from_pretrained(tmp_path, dtype=torch.bfloat16, torch_dtype=torch.float16)


def test_readme_loads_with_dtype_not_torch_dtype():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "dtype=torch.bfloat16" in readme and "torch_dtype=" not in readme


@pytest.mark.skipif(
    torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()),
    reason="an accelerator is here: offloading works rather than being refused",
)
@pytest.mark.parametrize("method", ["enable_model_cpu_offload", "enable_sequential_cpu_offload"])
@pytest.mark.parametrize("name", ["digits", "faces"])
def test_cpu_offload_without_an_accelerator_gives_diffusers_own_message(name, method, digits_pipe):
    import traceback

    pipe = digits_pipe if name == "digits" else make_pipe()
    with pytest.raises(RuntimeError, match=f"`{method}` requires accelerator, but not found") as raised:
        getattr(pipe, method)()
    raised_in = traceback.extract_tb(raised.value.__traceback__)[-1].filename
    assert "diffusers" in Path(raised_in).parts and "pipelines" in Path(raised_in).parts, raised_in
    assert "site-packages" in Path(raised_in).parts, raised_in  # diffusers' own code (a venv may sit in the checkout)


@pytest.mark.parametrize("pipeline_class", [ConditionalDDPMPipeline, DDIMFromNoisePipeline])
def test_call_docstring_describes_every_argument_as_diffusers_cli_schema_reads_it(pipeline_class):
    """`diffusers-cli schema --verbose` reads `__call__`'s signature and its Google-style `Args:` block."""
    import inspect

    from diffusers.commands.schema import _parse_docstring_args

    doc = pipeline_class.__call__.__doc__
    described = _parse_docstring_args(doc)
    arguments = [name for name in inspect.signature(pipeline_class.__call__).parameters if name != "self"]
    assert [name for name in arguments if not described.get(name)] == []
    assert set(described) == set(arguments)  # no description of an argument that is not there
    assert doc.index("Args:") < doc.index("Examples:") < doc.index("Returns:")
