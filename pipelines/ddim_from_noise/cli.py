"""DDIM from given noises, on the command line.

    # one NN.png for each NN.pt (the course's face task)
    python -m pipelines.ddim_from_noise --pretrained DIR --noise_dir DIR --output_dir OUT [--eta 0] \
        [--num_inference_steps 50] [--preset course|diffusers] [--seed 0] [--device cuda]
    # MSE on the 0-255 scale of each image pair, then the mean
    python -m pipelines.ddim_from_noise score --pred OUT --gt GT
    # initial noises in the course's format (float32 [1, C, H, W]) for a model of your own
    python -m pipelines.ddim_from_noise noise --output_dir DIR --num_noises 10 --channels 3 --resolution 256 --seed 0
"""

import argparse
import os
import sys
from pathlib import Path

import torch

from adapters.faces import face_mse, load_face_noises, save_face_noises
from pipelines.command_line import run_command
from pipelines.ddim_from_noise.pipeline_ddim_from_noise import PRESETS, DDIMFromNoisePipeline


def parse_sample_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.ddim_from_noise", description="DDIM from given initial noises."
    )
    parser.add_argument(
        "--pretrained", required=True, help="UNet2DModel folder (or its pipeline folder) or Hub id"
    )
    parser.add_argument("--noise_dir", required=True, help="folder of NN.pt initial noises")
    parser.add_argument("--output_dir", required=True, help="where NN.png is written for each NN.pt")
    parser.add_argument("--eta", type=float, default=0.0, help="0: deterministic DDIM, 1: DDPM variance")
    parser.add_argument("--num_inference_steps", type=int, default=50)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="course")
    parser.add_argument("--seed", type=int, default=0, help="image i draws its eta > 0 noise from seed + i")
    parser.add_argument("--batch_size", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def parse_score_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.ddim_from_noise score", description="MSE (0-255) per image pair."
    )
    parser.add_argument("--pred", required=True, help="folder of predicted NN.png")
    parser.add_argument("--gt", required=True, help="folder of ground-truth NN.png")
    return parser.parse_args(argv)


def parse_noise_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.ddim_from_noise noise", description="Write NN.pt noises."
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_noises", type=int, default=10)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def sample(args) -> list:
    """Writes OUT/NN.png for each NOISE_DIR/NN.pt; returns the written paths."""
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be positive, got {args.batch_size}")
    pipe = DDIMFromNoisePipeline.from_pretrained(args.pretrained, preset=args.preset).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    size = pipe.unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else size
    noises = load_face_noises(args.noise_dir, shape=(pipe.unet.config.in_channels, height, width))

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    names = list(noises)
    written = []
    for start in range(0, len(names), args.batch_size):
        batch = names[start : start + args.batch_size]
        # One generator per image: an image's result does not depend on the batch it lands in.
        generators = [torch.Generator(args.device).manual_seed(args.seed + names.index(n)) for n in batch]
        images = pipe(
            [noises[n] for n in batch],
            eta=args.eta,
            num_inference_steps=args.num_inference_steps,
            generator=generators,
        ).images
        for name, image in zip(batch, images):
            path = output_dir / f"{name}.png"
            tmp = output_dir / f".{name}.png.tmp"
            image.save(tmp, format="PNG")
            os.replace(tmp, path)
            written.append(path)
    return written


def score(args) -> float:
    """Prints the MSE of each pair and the mean; returns the mean."""
    scores = face_mse(args.pred, args.gt)
    for name, value in scores.items():
        print(f"{name}.png\t{value:.4f}")
    mean = sum(scores.values()) / len(scores)
    print(f"mean\t{mean:.4f}")
    return mean


def noise(args) -> None:
    save_face_noises(
        args.output_dir, args.num_noises, (args.channels, args.resolution, args.resolution), args.seed
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "score":
        return score(parse_score_args(argv[1:]))
    if argv and argv[0] == "noise":
        return noise(parse_noise_args(argv[1:]))
    return sample(parse_sample_args(argv))


def cli(argv=None):
    return run_command(main, None, argv)


if __name__ == "__main__":
    cli()
