"""The figures command (pipelines.conditional_ddpm.figures) on a tiny random conditional DDPM."""

import numpy as np
import pytest
from PIL import Image

from pipelines import ConditionalDDPMPipeline
from pipelines.conditional_ddpm import figures as cfg_figures
from tests.tiny_models import tiny_cfg_folder


@pytest.fixture(scope="module")
def tiny_pipeline_dir(tmp_path_factory):
    return tiny_cfg_folder(tmp_path_factory.mktemp("tiny-cfg"))


def test_command_writes_every_figure(tiny_pipeline_dir, tmp_path, capsys):
    args = cfg_figures.parse_args(
        [
            "--pretrained",
            str(tiny_pipeline_dir),
            "--output_dir",
            str(tmp_path),
            "--scheduler",
            "ddim",
            "--num_inference_steps",
            "3",
            "--sweep_samples",
            "2",
            "--skip_torchview",
        ]
    )
    cfg_figures.main(args)
    for name in ["grid_10x10.png", "reverse_process_0.png", "guidance_sweep.png", "architecture.png"]:
        with Image.open(tmp_path / name) as image:
            image.verify()
        with Image.open(tmp_path / name) as image:
            assert image.size[0] >= 400 and image.size[1] >= 150
            # a real drawing, not a blank canvas
            assert np.asarray(image.convert("L")).std() > 10
    text = (tmp_path / "architecture.txt").read_text()
    unet = ConditionalDDPMPipeline.from_pretrained(tiny_pipeline_dir).unet
    assert f"{sum(p.numel() for p in unet.parameters()):,} parameters" in text
    assert "GFLOP per image" in text and "print(unet):" in text and "UNet2DModel(" in text
    assert "null class id 10" in text
    assert not (tmp_path / "architecture_torchview.png").exists()
    assert "reverse-process frames t = [" in capsys.readouterr().out


def test_report_frames_are_exact_with_all_400_ddpm_steps(tiny_pipeline_dir):
    pipe = cfg_figures.load_pipeline(str(tiny_pipeline_dir))
    visited = cfg_figures.visited_timesteps(pipe, 400)
    assert visited == list(range(401))
    assert cfg_figures.nearest_visited(cfg_figures.REPORT_FRAMES, visited) == [400, 361, 261, 201, 101, 1]


def test_few_steps_use_the_nearest_visited_frames(tiny_pipeline_dir):
    pipe = cfg_figures.load_pipeline(str(tiny_pipeline_dir), scheduler="ddim")
    visited = cfg_figures.visited_timesteps(pipe, 4)
    frames = cfg_figures.nearest_visited(cfg_figures.REPORT_FRAMES, visited)
    assert set(frames) <= set(visited) and frames[-1] == 1
    out = cfg_figures.sample_each_digit(pipe, 2.0, per_digit=1, steps=4, seed=0, capture=frames)
    assert set(out.intermediates) == set(frames)


def test_sampling_is_seeded(tiny_pipeline_dir):
    pipe = cfg_figures.load_pipeline(str(tiny_pipeline_dir), scheduler="ddim")
    first = cfg_figures.sample_each_digit(pipe, 0.5, per_digit=1, steps=2, seed=3).images
    again = cfg_figures.sample_each_digit(pipe, 0.5, per_digit=1, steps=2, seed=3).images
    other = cfg_figures.sample_each_digit(pipe, 0.5, per_digit=1, steps=2, seed=4).images
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_tile_places_images_row_major_with_make_image_grid():
    tiles = np.stack([np.full((2, 3, 3), i / 10) for i in range(6)])
    canvas = cfg_figures.tile(tiles, rows=2, columns=3)
    assert canvas.shape == (4, 9, 3) and canvas.dtype == np.uint8  # 2 rows of 2 px, 3 columns of 3 px
    assert canvas[0, 0, 0] == 0 and canvas[2, 3, 0] == 102 and canvas[3, 8, 0] == 128  # 0.4, 0.5 of 255
    with pytest.raises(ValueError, match="do not fill"):
        cfg_figures.tile(tiles, rows=2, columns=2)


def test_bad_arguments_raise(tiny_pipeline_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cfg_figures.load_pipeline(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="scheduler must be one of"):
        cfg_figures.load_pipeline(str(tiny_pipeline_dir), scheduler="euler")
    with pytest.raises(ValueError, match="sweep_samples"):
        cfg_figures.main(cfg_figures.parse_args(["--pretrained", str(tiny_pipeline_dir), "--sweep_samples", "0"]))
    out = ["--output_dir", str(tmp_path / "out")]
    for bad, message in (
        (["--guidance", "nan"], "--guidance must be a finite"),
        (["--num_inference_steps", "0"], "--num_inference_steps must be an int between 1 and the"),
    ):
        with pytest.raises(ValueError, match=message):
            cfg_figures.parse_args(["--pretrained", str(tiny_pipeline_dir), *out, *bad])
    with pytest.raises(FileNotFoundError, match="--pretrained folder .*missing does not exist"):
        cfg_figures.parse_args(["--pretrained", str(tmp_path / "missing"), *out])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.png").write_bytes(b"")
    with pytest.raises(FileExistsError, match="--overwrite"):
        cfg_figures.parse_args(["--pretrained", str(tiny_pipeline_dir), *out])
    assert not (tmp_path / "out" / "grid_10x10.png").exists()


def test_torchview_graph_when_the_extra_is_installed(tiny_pipeline_dir, tmp_path):
    pytest.importorskip("torchview")
    import shutil

    if shutil.which("dot") is None:
        pytest.skip("graphviz's dot is not installed")
    pipe = cfg_figures.load_pipeline(str(tiny_pipeline_dir))
    assert cfg_figures.draw_torchview(pipe.unet, tmp_path / "graph.png")
    assert Image.open(tmp_path / "graph.png").size[1] > 200
