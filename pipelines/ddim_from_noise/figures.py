"""The DDIM figures of the course's face task, by one command.

    python -m pipelines.ddim_from_noise.figures --pretrained hub_cards/ddpm-lfw-faces \
        --noise_dir hub_cards/ddpm-lfw-faces/noise --output_dir docs/figures/ddim

writes, from the noises 00.pt .. 03.pt (and 00, 01 for the interpolations):

- ``eta_grid.png``: eta = 0.0, 0.1, ..., 0.9 (rows) x noises 00-03 (columns);
- ``eta_0.5_twice.png``: eta = 0.5 twice with different seeds (rows): what the randomness changes;
- ``slerp.png`` and ``lerp.png``: noise 00 to noise 01 at alpha = 0.0, 0.1, ..., 1.0, eta = 0.
"""

import argparse
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from adapters.faces import load_face_noises
from pipelines.command_line import run_command
from pipelines.ddim_from_noise.interpolation import lerp, slerp
from pipelines.ddim_from_noise.pipeline_ddim_from_noise import PRESETS, DDIMFromNoisePipeline

ETAS = [round(0.1 * i, 1) for i in range(10)]
ALPHAS = [round(0.1 * i, 1) for i in range(11)]
GRID_NOISES = ["00", "01", "02", "03"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="DDIM figures: eta grid, eta 0.5 twice, slerp and lerp rows."
    )
    parser.add_argument("--pretrained", required=True, help="UNet2DModel folder or Hub id")
    parser.add_argument("--noise_dir", required=True, help="folder with at least 00.pt .. 03.pt")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="course")
    parser.add_argument("--num_inference_steps", type=int, default=50)
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the eta > 0 noise; the repeat uses seed + 1"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def to_arrays(images) -> list:
    """PIL images to arrays for imshow (grey images stay 2-D)."""
    return [np.asarray(image) for image in images]


def save_grid(rows, row_labels, column_labels, xlabel, ylabel, title, path: Path, pad: int = 2) -> None:
    """Tiles rows of equal-size images into one labelled image and writes a PNG atomically."""
    height, width = rows[0][0].shape[:2]
    channels = () if rows[0][0].ndim == 2 else rows[0][0].shape[2:]
    mosaic = np.full(
        (len(rows) * (height + pad) - pad, len(rows[0]) * (width + pad) - pad, *channels), 255, np.uint8
    )
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            mosaic[
                r * (height + pad) : r * (height + pad) + height,
                c * (width + pad) : c * (width + pad) + width,
            ] = image

    scale = max(1.0, 48 / height)  # show small images at a readable size
    fig_width = max(4.0, mosaic.shape[1] * scale / 100 + 1.4)
    fig_height = mosaic.shape[0] * scale / 100 + 1.2
    fig, ax = plt.subplots(figsize=(fig_width, fig_height))
    ax.imshow(mosaic, cmap="gray" if mosaic.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks(
        [c * (width + pad) + width / 2 - 0.5 for c in range(len(rows[0]))], column_labels, fontsize=8
    )
    ax.set_yticks([r * (height + pad) + height / 2 - 0.5 for r in range(len(rows))], row_labels, fontsize=8)
    ax.tick_params(length=0)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=9)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def main(args) -> list:
    pipe = DDIMFromNoisePipeline.from_pretrained(args.pretrained, preset=args.preset).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    noises = load_face_noises(args.noise_dir)
    missing = [name for name in GRID_NOISES if name not in noises]
    if missing:
        raise FileNotFoundError(f"{args.noise_dir} lacks {', '.join(n + '.pt' for n in missing)}")
    grid_noise = torch.stack([noises[name] for name in GRID_NOISES])
    steps = args.num_inference_steps
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    column_labels = [f"{name}.pt" for name in GRID_NOISES]
    about = f"{args.preset} preset, {steps} steps"

    def generate(noise, eta, seed):
        generator = torch.Generator(args.device).manual_seed(seed)
        return to_arrays(pipe(noise, eta=eta, num_inference_steps=steps, generator=generator).images)

    # Every eta row uses the same seed, so rows differ only in eta.
    rows = [generate(grid_noise, eta, args.seed) for eta in ETAS]
    paths = [output_dir / "eta_grid.png"]
    save_grid(
        rows,
        [f"eta = {eta}" for eta in ETAS],
        column_labels,
        "initial noise",
        "eta",
        f"DDIM, eta from 0.0 to 0.9\n{about}",
        paths[-1],
    )

    rows = [generate(grid_noise, 0.5, args.seed), generate(grid_noise, 0.5, args.seed + 1)]
    paths.append(output_dir / "eta_0.5_twice.png")
    save_grid(
        rows,
        [f"seed {args.seed}", f"seed {args.seed + 1}"],
        column_labels,
        "initial noise",
        "eta = 0.5, two runs",
        f"DDIM at eta = 0.5, twice\n{about}",
        paths[-1],
    )

    alphas = torch.tensor(ALPHAS)
    for name, interpolate in (("slerp", slerp), ("lerp", lerp)):
        row = generate(interpolate(noises["00"], noises["01"], alphas), 0.0, args.seed)
        paths.append(output_dir / f"{name}.png")
        save_grid(
            [row],
            [name],
            [f"{a}" for a in ALPHAS],
            "alpha (0: 00.pt, 1: 01.pt)",
            "",
            f"{name} from noise 00 to noise 01, eta = 0, {about}",
            paths[-1],
        )
    return paths


def cli(argv=None):
    return run_command(main, parse_args, argv)


if __name__ == "__main__":
    cli()
