"""The DDIM figures of the course's face task, by one command.

    python -m pipelines.ddim_from_noise.figures --pretrained ddpm-lfw-faces --output_dir docs/figures/ddim

writes, from the noises 00.pt .. 03.pt of --noise_dir (default: the model folder's noise/; 00, 01 for the
interpolations):

- ``eta_grid.png``: eta = 0.0, 0.1, ..., 0.9 (rows) x noises 00-03 (columns);
- ``eta_0.5_twice.png``: eta = 0.5 twice with different seeds (rows): what the randomness changes;
- ``slerp.png`` and ``lerp.png``: noise 00 to noise 01 at alpha = 0.0, 0.1, ..., 1.0, eta = 0.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers.utils import make_image_grid
from matplotlib.figure import Figure

from adapters.faces import load_face_noises
from adapters.folders import write_folder_atomically
from pipelines.command_line import run_command
from pipelines.ddim_from_noise.cli import add_model_arguments, check_model_arguments, load_pipeline
from pipelines.ddim_from_noise.interpolation import lerp, slerp
from pipelines.seeds import step_noise_generator

ETAS = [round(0.1 * i, 1) for i in range(10)]
ALPHAS = [round(0.1 * i, 1) for i in range(11)]
GRID_NOISES = ["00", "01", "02", "03"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="DDIM figures: eta grid, eta 0.5 twice, slerp and lerp rows.")
    add_model_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the eta > 0 noise; the repeat uses seed + 1")
    args = parser.parse_args(argv)
    check_model_arguments(args)
    return args


def save_grid(rows, row_labels, column_labels, xlabel, ylabel, title, path: Path) -> None:
    """Tiles rows of equal-size PIL images with make_image_grid and labels rows and columns with matplotlib."""
    mosaic = np.asarray(make_image_grid([image for row in rows for image in row], len(rows), len(rows[0])))
    width, height = rows[0][0].size
    scale = max(1.0, 48 / height)  # show small images at a readable size
    fig_width = max(4.0, mosaic.shape[1] * scale / 100 + 1.4)
    fig_height = mosaic.shape[0] * scale / 100 + 1.2
    fig = Figure(figsize=(fig_width, fig_height))
    ax = fig.subplots()
    ax.imshow(mosaic, vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([c * width + width / 2 - 0.5 for c in range(len(rows[0]))], column_labels, fontsize=8)
    ax.set_yticks([r * height + height / 2 - 0.5 for r in range(len(rows))], row_labels, fontsize=8)
    ax.tick_params(length=0)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=9)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)


def main(args) -> list:
    noises = load_face_noises(args.noise_dir)
    pipe = load_pipeline(args, noises)
    pipe.set_progress_bar_config(disable=True)
    missing = [name for name in GRID_NOISES if name not in noises]
    if missing:
        raise FileNotFoundError(f"{args.noise_dir} lacks {', '.join(n + '.pt' for n in missing)}")
    grid_noise = torch.stack([noises[name] for name in GRID_NOISES])
    steps = args.num_inference_steps
    column_labels = [f"{name}.pt" for name in GRID_NOISES]
    about = f"{pipe.preset_name} preset, {steps} steps"

    def generate(noise, eta, seed):
        generator = step_noise_generator(seed, device=args.device)
        return pipe(noise, eta=eta, num_inference_steps=steps, generator=generator).images

    def write_figures(folder: Path) -> list[str]:
        # Every eta row uses the same seed, so rows differ only in eta.
        rows = [generate(grid_noise, eta, args.seed) for eta in ETAS]
        save_grid(
            rows,
            [f"eta = {eta}" for eta in ETAS],
            column_labels,
            "initial noise",
            "eta",
            f"DDIM, eta from 0.0 to 0.9\n{about}",
            folder / "eta_grid.png",
        )
        rows = [generate(grid_noise, 0.5, args.seed), generate(grid_noise, 0.5, args.seed + 1)]
        save_grid(
            rows,
            [f"seed {args.seed}", f"seed {args.seed + 1}"],
            column_labels,
            "initial noise",
            "eta = 0.5, two runs",
            f"DDIM at eta = 0.5, twice\n{about}",
            folder / "eta_0.5_twice.png",
        )
        names = ["eta_grid.png", "eta_0.5_twice.png"]
        alphas = torch.tensor(ALPHAS)
        for name, interpolate in (("slerp", slerp), ("lerp", lerp)):
            row = generate(interpolate(noises["00"], noises["01"], alphas), 0.0, args.seed)
            save_grid(
                [row],
                [name],
                [f"{a}" for a in ALPHAS],
                "alpha (0: 00.pt, 1: 01.pt)",
                "",
                f"{name} from noise 00 to noise 01, eta = 0, {about}",
                folder / f"{name}.png",
            )
            names.append(f"{name}.png")
        return names

    # All four figures or none: the folder is built aside and renamed into place.
    names = write_folder_atomically(args.output_dir, write_figures)
    return [Path(args.output_dir) / name for name in names]


def cli(argv=None) -> None:
    run_command(main, parse_args, argv)


if __name__ == "__main__":
    cli()
