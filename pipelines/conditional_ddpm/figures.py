"""The report's figures of the conditional DDPM, written as PNGs by one command.

    python -m pipelines.conditional_ddpm.figures --pretrained cfg-mnistm --output_dir docs/figures/cfg
    python -m pipelines.conditional_ddpm.figures ... --scheduler dpm --num_inference_steps 10      # fast on a CPU

Writes, into --output_dir:
  grid_10x10.png        10 samples (columns) of each digit 0-9 (rows) at guidance w
  reverse_process_0.png x_t of the first "0" of the grid at t = 400, 361, 261, 201, 101, 1
  guidance_sweep.png    the same seeds at w = 0, 0.5, 2 (rows), digits 0-9 (columns)
  architecture.txt      print(unet), parameter counts, GFLOP per forward, the UNet config
  architecture.png      a block diagram drawn from the UNet (resolutions, channels, class embedding)
  architecture_torchview.png  the traced graph, only when the optional `torchview` extra is installed

Time runs as in the report: t = 400 is the pure noise the reverse process starts from and t counts
down to t = 1, the input of the last denoising step. With fewer inference steps (DDIM) only some t
are visited; each requested frame then shows the nearest visited t, and the label says which.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import UNet2DModel
from diffusers.utils import make_image_grid
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from adapters.digits import to_uint8
from adapters.folders import check_output_dir, write_folder_atomically
from pipelines.command_line import run_command
from pipelines.conditional_ddpm.course_output import add_model_arguments, check_model_arguments
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import NUM_DIGITS, ConditionalDDPMPipeline
from pipelines.conditional_ddpm.schedulers import SCHEDULERS, default_steps, make_scheduler

REPORT_FRAMES = (400, 361, 261, 201, 101, 1)
SWEEP_GUIDANCE = (0.0, 0.5, 2.0)


def load_pipeline(pretrained: str, scheduler: str = "ddpm", device: str = "cpu") -> ConditionalDDPMPipeline:
    if not Path(pretrained).is_dir():
        raise FileNotFoundError(f"pipeline folder {pretrained} does not exist")
    pipe = ConditionalDDPMPipeline.from_pretrained(pretrained)
    pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def visited_timesteps(pipe: ConditionalDDPMPipeline, num_inference_steps: int) -> list[int]:
    """The report-convention t the pipeline can capture with this many steps (see its docstring)."""
    pipe.scheduler.set_timesteps(num_inference_steps)
    return sorted({int(t) + 1 for t in pipe.scheduler.timesteps} | {0})


def nearest_visited(requested: Sequence[int], visited: Sequence[int]) -> list[int]:
    return [min(visited, key=lambda t: (abs(t - wanted), -t)) for wanted in requested]


def tile(images: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """[rows * columns, H, W, 3] in [0, 1] -> one uint8 image, row-major, tiled by diffusers' make_image_grid."""
    if len(images) != rows * columns:
        raise ValueError(f"{len(images)} images do not fill a {rows}x{columns} grid")
    pixels = to_uint8(torch.from_numpy(np.ascontiguousarray(images)), value_range=(0, 1)).numpy()
    return np.asarray(make_image_grid([PIL.Image.fromarray(x) for x in pixels], rows, columns))


def _show_mosaic(ax, images, rows, columns, row_labels, column_labels, ylabel, xlabel):
    tile_h, tile_w = images.shape[1], images.shape[2]
    ax.imshow(tile(images, rows, columns), interpolation="nearest")
    ax.set_yticks([r * tile_h + tile_h / 2 - 0.5 for r in range(rows)], row_labels)
    ax.set_xticks([c * tile_w + tile_w / 2 - 0.5 for c in range(columns)], column_labels)
    ax.tick_params(length=0)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel)
    for spine in ax.spines.values():
        spine.set_visible(False)


def sample_each_digit(pipe, guidance: float, per_digit: int, steps: int, seed: int, capture=()):
    """`per_digit` samples of each digit 0-9 (digit-major) as numpy images, from one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return pipe(
        digit=list(range(NUM_DIGITS)),
        guidance=guidance,
        num_images_per_digit=per_digit,
        num_inference_steps=steps,
        generator=generator,
        output_type="np",
        capture_timesteps=capture,
    )


def grid_and_reverse_process(pipe, output_dir: Path, guidance: float, steps: int, seed: int, label: str):
    """grid_10x10.png, and reverse_process_0.png from the same run (the first "0" of the grid)."""
    frames = nearest_visited(REPORT_FRAMES, visited_timesteps(pipe, steps))
    out = sample_each_digit(pipe, guidance, per_digit=10, steps=steps, seed=seed, capture=frames)

    fig = Figure(figsize=(6.4, 6.8))
    ax = fig.subplots()
    _show_mosaic(ax, out.images, NUM_DIGITS, 10, range(NUM_DIGITS), range(1, 11), "digit (class label)", "sample")
    ax.set_title(f"10 samples of each digit, guidance w = {guidance:g}\n{label}", fontsize=9)
    fig.tight_layout()
    fig.savefig(output_dir / "grid_10x10.png", dpi=130)

    fig = Figure(figsize=(1.6 * len(frames), 2.3))
    axes = fig.subplots(1, len(frames))
    for ax, t in zip(axes, frames):
        ax.imshow(out.intermediates[t][0], interpolation="nearest")
        ax.set_title(f"t = {t}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f'Reverse process of the first "0" of the grid (w = {guidance:g}, {label})', fontsize=9)
    fig.text(
        0.5,
        0.03,
        f"t counts down: t = {pipe.scheduler.config.num_train_timesteps} is the pure noise "
        "the process starts from, t = 1 the input of the last denoising step",
        ha="center",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    fig.savefig(output_dir / "reverse_process_0.png", dpi=130)
    return frames


def guidance_sweep(pipe, output_dir: Path, per_digit: int, steps: int, seed: int, label: str):
    """The same seeds (hence the same starting noise) at w = 0, 0.5, 2: one band of rows per w."""
    fig = Figure(figsize=(6.4, 0.75 * per_digit * len(SWEEP_GUIDANCE) + 1.2))
    axes = fig.subplots(len(SWEEP_GUIDANCE), 1)
    for ax, guidance in zip(np.atleast_1d(axes), SWEEP_GUIDANCE):
        images = sample_each_digit(pipe, guidance, per_digit, steps, seed).images
        # The pipeline is digit-major; show digits as columns and samples as rows.
        images = images.reshape(NUM_DIGITS, per_digit, *images.shape[1:]).swapaxes(0, 1).reshape(images.shape)
        _show_mosaic(
            ax,
            images,
            per_digit,
            NUM_DIGITS,
            range(1, per_digit + 1),
            range(NUM_DIGITS),
            f"w = {guidance:g}\nsample",
            "digit (class label)",
        )
    fig.suptitle(f"Classifier-free guidance sweep, same seeds in every band ({label})", fontsize=9)
    fig.tight_layout()
    fig.savefig(output_dir / "guidance_sweep.png", dpi=130)


def forward_gflop(unet: UNet2DModel) -> float:
    """GFLOP of one forward of one image (torch's FLOP counter; a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    size = unet.config.sample_size
    sample = torch.zeros(1, unet.config.in_channels, size, size, device=unet.device, dtype=unet.dtype)
    labels = torch.zeros(1, dtype=torch.long, device=unet.device) if unet.config.num_class_embeds else None
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(sample, torch.tensor([1], device=unet.device), class_labels=labels)
    return counter.get_total_flops() / 1e9


def architecture_text(unet: UNet2DModel, null_class_id: int) -> str:
    total = sum(p.numel() for p in unet.parameters())
    lines = [
        f"UNet2DModel of the conditional DDPM: {total:,} parameters ({total / 1e6:.2f}M)",
        f"forward cost: {forward_gflop(unet):.3f} GFLOP per image at {unet.config.sample_size}x"
        f"{unet.config.sample_size} (guided sampling with w > 0 runs 2 forwards per step)",
        f"class embedding: nn.Embedding({unet.config.num_class_embeds}, time_embed_dim), digits 0-9, "
        f"null class id {null_class_id}; added to the timestep embedding and fed to every ResNet block",
        "",
        "parameters per part:",
    ]
    for name, child in unet.named_children():
        count = sum(p.numel() for p in child.parameters())
        if count:
            lines.append(f"  {name:<20} {count:>12,}")
    lines += ["", "config:", json.dumps(dict(unet.config), indent=2, default=str), "", "print(unet):", str(unet)]
    return "\n".join(lines) + "\n"


def _resolutions(unet: UNet2DModel) -> list[int]:
    """Side length at which each down block works; a stride-2 3x3 conv maps n to ceil(n / 2)."""
    sizes = [unet.config.sample_size]
    for _ in unet.config.block_out_channels[1:]:
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


def draw_architecture(unet: UNet2DModel, null_class_id: int, path: Path):
    """A U-shaped block diagram drawn from the UNet's config and modules (no graphviz needed)."""
    config = unet.config
    channels = list(config.block_out_channels)
    levels = len(channels)
    sizes = _resolutions(unet)
    size, in_ch = config.sample_size, config.in_channels

    def params(module) -> str:
        return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M params"

    fig = Figure(figsize=(11, 2.2 * levels + 4.2))
    ax = fig.subplots()
    ax.set_xlim(0, 11)
    ax.set_ylim(-2.2 * levels - 2.4, 2.6)
    ax.axis("off")

    def box(x, y, text, color, width=3.0, height=1.45):
        ax.add_patch(
            FancyBboxPatch(
                (x - width / 2, y - height / 2),
                width,
                height,
                boxstyle="round,pad=0.05",
                facecolor=color,
                edgecolor="0.3",
            )
        )
        ax.text(x, y, text, ha="center", va="center", fontsize=8)

    def arrow(start, end, style="-|>", color="0.25", **kwargs):
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color, **kwargs))

    left, right, middle = 1.9, 9.1, 5.5
    box(left, 1.6, f"input x_t\n{in_ch}x{size}x{size}", "#eeeeee", width=2.6, height=0.9)
    box(left, 0.3, f"conv_in 3x3\n{in_ch} -> {channels[0]} ch", "#eeeeee", width=2.6, height=0.9)
    arrow((left, 1.12), (left, 0.78))
    rows = [-2.2 * (i + 1) + 0.6 for i in range(levels)]
    for i, (block_type, down) in enumerate(zip(config.down_block_types, unet.down_blocks)):
        attention = " + self-attention" if "Attn" in block_type else ""
        resample = f"\ndownsample -> {sizes[i + 1]}x{sizes[i + 1]}" if i < levels - 1 else ""
        box(
            left,
            rows[i],
            f"{block_type}\n{config.layers_per_block} x ResNet{attention}\n"
            f"{channels[max(i - 1, 0)]} -> {channels[i]} ch @ {sizes[i]}x{sizes[i]}{resample}\n{params(down)}",
            "#cfe2f3",
        )
        arrow((left, rows[i - 1] - 0.75 if i else -0.15), (left, rows[i] + 0.75))
    for j, (block_type, up) in enumerate(zip(config.up_block_types, unet.up_blocks)):
        i = levels - 1 - j  # the up block at the same resolution as down block i
        attention = " + self-attention" if "Attn" in block_type else ""
        resample = f"\nupsample -> {sizes[i - 1]}x{sizes[i - 1]}" if i > 0 else ""
        box(
            right,
            rows[i],
            f"{block_type}\n{config.layers_per_block + 1} x ResNet{attention}\n"
            f"-> {channels[i]} ch @ {sizes[i]}x{sizes[i]}{resample}\n{params(up)}",
            "#d9ead3",
        )
        if i > 0:
            arrow((right, rows[i] + 0.75), (right, rows[i - 1] - 0.75))
        arrow((left + 1.55, rows[i]), (right - 1.55, rows[i]), linestyle="--")
        ax.text(middle, rows[i] + 0.12, "skip connections (concatenated)", ha="center", fontsize=7, color="0.35")
    mid_y = rows[-1] - 2.0
    mid_type = config.mid_block_type or "no mid block"
    mid_attention = any(a is not None for a in getattr(unet.mid_block, "attentions", []))
    mid_layers = "ResNet + self-attention + ResNet" if mid_attention else "ResNet + ResNet"
    mid_text = f"{mid_type}\n{mid_layers}\n{channels[-1]} ch @ {sizes[-1]}x{sizes[-1]}"
    box(middle, mid_y, mid_text + (f"\n{params(unet.mid_block)}" if unet.mid_block is not None else ""), "#fce5cd")
    arrow((left, rows[-1] - 0.75), (middle - 1.55, mid_y))
    arrow((middle + 1.55, mid_y), (right, rows[-1] - 0.75))
    box(
        right,
        0.3,
        f"GroupNorm, SiLU, conv_out\n{channels[0]} -> {config.out_channels} ch",
        "#eeeeee",
        width=2.6,
        height=0.9,
    )
    box(right, 1.6, f"predicted noise eps\n{config.out_channels}x{size}x{size}", "#eeeeee", width=2.6, height=0.9)
    arrow((right, rows[0] + 0.75), (right, -0.17))
    arrow((right, 0.78), (right, 1.12))

    time_dim = unet.time_embedding.linear_2.out_features
    box(
        middle - 1.0,
        1.6,
        f"timestep t\nsinusoidal ({channels[0]})\n-> MLP -> {time_dim}",
        "#fff2cc",
        width=1.8,
        height=0.9,
    )
    box(
        middle + 1.0,
        1.6,
        f"class c: 0-9, null = {null_class_id}\nEmbedding({config.num_class_embeds}, {time_dim})",
        "#fff2cc",
        width=1.8,
        height=0.9,
    )
    box(middle, 0.3, "emb = time emb + class emb", "#fff2cc", width=3.4, height=0.5)
    arrow((middle - 1.0, 1.12), (middle - 0.6, 0.58))
    arrow((middle + 1.0, 1.12), (middle + 0.6, 0.58))
    for x in (left + 1.0, right - 1.0):  # emb is added to the features inside every ResNet block
        arrow((middle, 0.02), (x, rows[0] + 0.75), linestyle=":", color="#b45f06")
    ax.text(middle, -0.45, "emb enters every ResNet block", ha="center", fontsize=7, color="#b45f06")
    total = sum(p.numel() for p in unet.parameters())
    ax.set_title(
        f"Conditional DDPM noise predictor: UNet2DModel, {total / 1e6:.2f}M parameters, "
        f"{forward_gflop(unet):.2f} GFLOP per image",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def draw_torchview(unet: UNet2DModel, path: Path) -> bool:
    """The traced module graph at depth 2 via the optional torchview extra; False when it is missing."""
    try:
        from torchview import draw_graph
    except ImportError:
        return False

    class NoisePredictor(torch.nn.Module):  # torchview needs a tensor output, not UNet2DOutput
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, sample, timestep, class_labels):
            return self.unet(sample, timestep, class_labels=class_labels).sample

    size = unet.config.sample_size
    inputs = [torch.zeros(1, unet.config.in_channels, size, size), torch.tensor([1]), torch.tensor([0])]
    graph = draw_graph(NoisePredictor(unet).cpu(), input_data=inputs, depth=2, graph_dir="TB")
    graph.visual_graph.render(filename=path.stem, directory=str(path.parent), format="png", cleanup=True)
    return True


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--output_dir", default="docs/figures/cfg")
    parser.add_argument(
        "--scheduler",
        choices=sorted(SCHEDULERS),
        default="ddpm",
        help="default: the report's sampler, every trained step, so that each reverse-process frame is visited",
    )
    parser.add_argument(
        "--num_inference_steps",
        type=int,
        default=None,
        help="default: every trained step (400) for ddpm, 50 for ddim, 10 for dpm and unipc",
    )
    parser.add_argument("--sweep_samples", type=int, default=3, help="samples per digit at each w of the sweep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip_torchview", action="store_true", help="do not draw the torchview graph")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output_dir")
    args = parser.parse_args(argv)
    # Checked before the model loads or any folder is made, so a typo costs nothing.
    if args.sweep_samples < 1:
        raise ValueError(f"--sweep_samples must be >= 1, got {args.sweep_samples}")
    check_model_arguments(args)
    check_output_dir(args.output_dir, args.overwrite, inputs=(args.pretrained,))
    return args


def main(args):
    pipe = load_pipeline(args.pretrained, args.scheduler, args.device)
    steps = args.num_inference_steps
    if steps is None:
        steps = default_steps(args.scheduler, pipe.scheduler.config.num_train_timesteps)
    label = f"{type(pipe.scheduler).__name__}, {steps} steps, seed {args.seed}"
    null_class_id = pipe.config.null_class_id

    def write_figures(folder: Path) -> tuple[list[str], list[int]]:
        frames = grid_and_reverse_process(pipe, folder, args.guidance, steps, args.seed, label)
        guidance_sweep(pipe, folder, args.sweep_samples, steps, args.seed, label)
        (folder / "architecture.txt").write_text(architecture_text(pipe.unet, null_class_id))
        draw_architecture(pipe.unet, null_class_id, folder / "architecture.png")
        written = [
            "grid_10x10.png",
            "reverse_process_0.png",
            "guidance_sweep.png",
            "architecture.txt",
            "architecture.png",
        ]
        if not args.skip_torchview and draw_torchview(pipe.unet, folder / "architecture_torchview.png"):
            written.append("architecture_torchview.png")
        return written, frames

    # All figures or none: a failure half-way leaves the previous set (or no folder), never a mixture.
    written, frames = write_folder_atomically(args.output_dir, write_figures)
    print(f"wrote {', '.join(written)} to {args.output_dir} ({label}; reverse-process frames t = {frames})")


def cli(argv=None) -> None:
    run_command(main, parse_args, argv)


if __name__ == "__main__":
    cli()
