"""DDIM from given noises, on the command line.

    # one NN.png for each NN.pt (the course's face task); --noise_dir defaults to the model folder's noise/
    python -m pipelines.ddim_from_noise --pretrained DIR --noise_dir DIR --output_dir OUT [--eta 0] \
        [--num_inference_steps 50] [--preset course|diffusers] [--seed 0] [--device cuda] [--overwrite]
    python -m pipelines.ddim_from_noise --pretrained ddpm-lfw-faces --output_dir OUT     # the shipped model
    # a network with its own code (the course's UNet.py) and a plain state dict of it (UNet.pt)
    python -m pipelines.ddim_from_noise --pretrained hw2_data/face/UNet.pt --unet_code UNet.py:UNet \
        --noise_dir hw2_data/face/noise --output_dir OUT
    # MSE on the 0-255 scale of each image pair, then the mean
    python -m pipelines.ddim_from_noise score --pred OUT --gt GT
    # initial noises in the course's format (float32 [1, C, H, W]) for a model of your own
    python -m pipelines.ddim_from_noise noise --output_dir DIR --num_noises 10 --channels 3 --resolution 256 --seed 0

Arguments are checked before the model loads; an output folder is written whole or not at all (a staging
folder renamed into place), and a non-empty one is refused unless --overwrite is given.
"""

import argparse
import shutil
import sys
from pathlib import Path

import torch

from adapters.faces import check_noise, face_mse, load_face_noises, save_face_noises
from adapters.folders import check_output_dir, write_folder_atomically
from pipelines.command_line import check_seed, resolve_pretrained, run_command
from pipelines.ddim_from_noise.foreign_unet import load_foreign_unet, parse_code_spec
from pipelines.ddim_from_noise.pipeline_ddim_from_noise import PRESETS, DDIMFromNoisePipeline
from pipelines.model_folders import check_unet_folder
from pipelines.seeds import step_noise_generator

# how the pipeline's rules name this command's flags in their messages
FLAGS = {"eta": "--eta", "num_inference_steps": "--num_inference_steps"}


def add_model_arguments(parser: argparse.ArgumentParser, num_inference_steps: int = 50) -> None:
    """The arguments every command that samples from given noises takes (this one and the figures)."""
    parser.add_argument(
        "--pretrained",
        required=True,
        help="UNet2DModel folder (or its pipeline folder), a shipped model's name (ddpm-lfw-faces) or a Hub id; "
        "with --unet_code, a state-dict file of that network (the course's UNet.pt)",
    )
    parser.add_argument(
        "--unet_code",
        default=None,
        metavar="FILE.py:CLASS",
        help="the code of a network that is not a diffusers model, e.g. UNet.py:UNet (a torch.nn.Module with "
        "forward(x, t) predicting noise, built with its default arguments); imported only because you name it",
    )
    parser.add_argument(
        "--noise_dir", default=None, help="folder of NN.pt initial noises (default: the model folder's noise/)"
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="default: the stored settings of a saved DDIMFromNoisePipeline, else course",
    )
    parser.add_argument("--num_inference_steps", type=int, default=num_inference_steps)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output_dir")


def check_model_arguments(args: argparse.Namespace, eta: float = 0.0) -> None:
    """Everything about the model, the noises and the output folder that can be checked before the model loads
    or a folder is made; resolves --pretrained (a shipped name becomes its folder) and the default --noise_dir."""
    check_seed(args.seed)
    if args.unet_code is not None:
        parse_code_spec(args.unet_code)
        if not Path(args.pretrained).is_file():
            raise FileNotFoundError(
                f"--pretrained {args.pretrained}: with --unet_code, give the file of the network's weights "
                "(a state dict, such as the course's UNet.pt)"
            )
        if args.noise_dir is None:
            raise FileNotFoundError("--unet_code needs --noise_dir: a weights file has no noise/ folder beside it")
    else:
        if Path(args.pretrained).is_file():
            raise NotADirectoryError(
                f"--pretrained {args.pretrained} is a file: give a model folder, or, for a state dict of a network "
                "with its own code (the course's UNet.pt), name that code with --unet_code UNet.py:UNet"
            )
        args.pretrained = resolve_pretrained(args.pretrained)
        check_unet_folder(args.pretrained)
    DDIMFromNoisePipeline.check_call_arguments(
        None if args.unet_code else args.pretrained,  # a state dict has no stored schedule: the preset's
        eta=eta,
        num_inference_steps=args.num_inference_steps,
        preset=args.preset,
        spelling=FLAGS,
    )
    if args.noise_dir is None:
        if not (Path(args.pretrained) / "noise").is_dir():
            raise FileNotFoundError(f"--pretrained {args.pretrained} has no noise/ folder: give --noise_dir")
        args.noise_dir = str(Path(args.pretrained) / "noise")
    if not Path(args.noise_dir).is_dir():
        raise FileNotFoundError(f"noise folder {args.noise_dir} (--noise_dir) does not exist")
    check_output_dir(args.output_dir, args.overwrite, inputs=(args.pretrained, args.noise_dir))


def parse_sample_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.ddim_from_noise", description="DDIM from given initial noises."
    )
    add_model_arguments(parser)
    parser.add_argument("--eta", type=float, default=0.0, help="0: deterministic DDIM, 1: DDPM variance")
    parser.add_argument(
        "--seed", type=int, default=0, help="image i draws its eta > 0 noise from step_noise_seed(seed, i)"
    )
    parser.add_argument("--batch_size", type=int, default=10)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    check_model_arguments(args, eta=args.eta)
    return args


def parse_score_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.ddim_from_noise score", description="MSE (0-255) per image pair."
    )
    parser.add_argument("--pred", required=True, help="folder of predicted NN.png")
    parser.add_argument("--gt", required=True, help="folder of ground-truth NN.png")
    return parser.parse_args(argv)


# The noise command's sizes: at most a 4096x4096 image of 4 channels (256 MiB a noise, held in memory one at a
# time), at most 1000 noises, and no more than the output's disk can hold.
MAX_NOISE_SIDE = 4096
MAX_NOISE_CHANNELS = 4
MAX_NOISES = 1000


def parse_noise_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.ddim_from_noise noise", description="Write NN.pt noises."
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_noises", type=int, default=10)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --output_dir")
    args = parser.parse_args(argv)
    for option, most in (("num_noises", MAX_NOISES), ("channels", MAX_NOISE_CHANNELS), ("resolution", MAX_NOISE_SIDE)):
        if not 1 <= getattr(args, option) <= most:
            raise ValueError(f"--{option} must be in [1, {most}], got {getattr(args, option)}")
    check_seed(args.seed)
    output_dir = check_output_dir(args.output_dir, args.overwrite)
    check_room_for_noises(args, output_dir)
    return args


def check_room_for_noises(args, output_dir: Path) -> None:
    """The noises (float32) must fit in the free space of the output's file system, with the old output kept until
    the new one is whole."""
    size = args.num_noises * args.channels * args.resolution**2 * 4
    existing = output_dir
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if size > free:
        raise ValueError(
            f"{args.num_noises} noises of {args.channels}x{args.resolution}x{args.resolution} take "
            f"{size / 2**30:.1f} GiB, but {existing} has {free / 2**30:.1f} GiB free"
        )


def load_pipeline(args, noises: dict[str, torch.Tensor]) -> DDIMFromNoisePipeline:
    """The pipeline of --pretrained (and --unet_code) with --preset, on --device; the noises must fit its UNet."""
    if args.unet_code is not None:
        channels, height, width = next(iter(noises.values())).shape  # a plain network states no size: the noises do
        unet = load_foreign_unet(args.unet_code, args.pretrained, sample_size=(height, width), in_channels=channels)
        pipe = DDIMFromNoisePipeline.from_unet(unet, preset=args.preset or "course")
    else:
        pipe = DDIMFromNoisePipeline.from_pretrained(args.pretrained, preset=args.preset)
    pipe = pipe.to(args.device)
    size = pipe.unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else size
    expected = (pipe.unet.config.in_channels, height, width)
    first = next(iter(noises))
    check_noise(noises[first], str(Path(args.noise_dir) / f"{first}.pt"), expected)  # they all share one shape
    return pipe


def sample(args) -> list:
    """Writes OUT/NN.png for each NOISE_DIR/NN.pt, all or nothing; returns the written paths."""
    noises = load_face_noises(args.noise_dir)  # a bad noise file is refused before the model loads
    pipe = load_pipeline(args, noises)
    pipe.set_progress_bar_config(disable=True)
    names = list(noises)

    def write_images(staging: Path) -> None:
        for start in range(0, len(names), args.batch_size):
            batch = names[start : start + args.batch_size]
            # One generator per image: an image's result does not depend on the batch it lands in.
            generators = [step_noise_generator(args.seed, names.index(n), device=args.device) for n in batch]
            images = pipe(
                [noises[n] for n in batch],
                eta=args.eta,
                num_inference_steps=args.num_inference_steps,
                generator=generators,
            ).images
            for name, image in zip(batch, images):
                image.save(staging / f"{name}.png", format="PNG")

    write_folder_atomically(args.output_dir, write_images)
    return [Path(args.output_dir) / f"{name}.png" for name in names]


def score(args) -> float:
    """Prints the MSE of each pair and the mean; returns the mean."""
    scores = face_mse(args.pred, args.gt)
    for name, value in scores.items():
        print(f"{name}.png\t{value:.4f}")
    mean = sum(scores.values()) / len(scores)
    print(f"mean\t{mean:.4f}")
    return mean


def noise(args) -> None:
    shape = (args.channels, args.resolution, args.resolution)
    write_folder_atomically(
        args.output_dir, lambda staging: save_face_noises(staging, args.num_noises, shape, args.seed)
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "score":
        return score(parse_score_args(argv[1:]))
    if argv and argv[0] == "noise":
        return noise(parse_noise_args(argv[1:]))
    return sample(parse_sample_args(argv))


def cli(argv=None) -> None:
    run_command(main, None, argv)


if __name__ == "__main__":
    cli()
