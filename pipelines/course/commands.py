"""The course's three graded scripts, with exactly their positional arguments (REFERENCE.md, "The course's grading
harness"), on the project's commands and shipped models:

    python -m pipelines.course hw2_1 OUT_DIR                      # 1000 digits {d}_{001..100}.png (cfg-mnistm-fast)
    python -m pipelines.course hw2_2 NOISE_DIR OUT_DIR UNET_PT --unet_code UNet.py:UNet   # NN.png, course preset
    python -m pipelines.course hw2_3 IMAGE_DIR OUT_CSV            # image_name,label; svhn or usps from the path

Each is a front end: its positional arguments become the flags of the command that does the work
(`pipelines.conditional_ddpm`, `pipelines.ddim_from_noise`, `pipelines.dann`), with the course's settings as
defaults, and any further flag (after the positional arguments) goes to that command as it is: `hw2_1 OUT
--pretrained cfg-mnistm` samples with the teacher, a later flag overriding the default. Errors are that
command's: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.command_line import run_command

DIGITS_MODEL = "cfg-mnistm-fast"
"""0.994 of 1000 digits by the project's classifier and 0.974 by the course's own, in about 9 s on a 2-core CPU."""
TARGET_MODELS = {"usps": "dann-mnistm-usps", "svhn": None}
"""The shipped model per target domain; none for SVHN, which cannot be downloaded here to train one."""

# The course's DDIM setting: 50 uniformly spaced steps, eta = 0, timesteps 980 ... 0, images min-max normalised.
COURSE_DDIM = ["--preset", "course", "--eta", "0", "--num_inference_steps", "50"]


def hw2_1(argv: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(prog="python -m pipelines.course hw2_1", description="The course's hw2_1.sh.")
    parser.add_argument("out_dir", help="where the 1000 digits {digit}_{001..100}.png go")
    known, extra = parser.parse_known_args(argv)
    return ["pipelines.conditional_ddpm", "--pretrained", DIGITS_MODEL, "--output_dir", known.out_dir, *extra]


def hw2_2(argv: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(prog="python -m pipelines.course hw2_2", description="The course's hw2_2.sh.")
    parser.add_argument("noise_dir", help="the course's NN.pt initial noises")
    parser.add_argument("out_dir", help="where NN.png go")
    parser.add_argument(
        "unet_pt",
        help="the face model: the course's UNet.pt (with --unet_code UNet.py:UNet), or a UNet2DModel folder or "
        "shipped name (ddpm-lfw-faces)",
    )
    known, extra = parser.parse_known_args(argv)
    flags = ["--pretrained", known.unet_pt, "--noise_dir", known.noise_dir, "--output_dir", known.out_dir]
    return ["pipelines.ddim_from_noise", *COURSE_DDIM, *flags, *extra]


def hw2_3(argv: list[str]) -> list[str]:
    parser = argparse.ArgumentParser(prog="python -m pipelines.course hw2_3", description="The course's hw2_3.sh.")
    parser.add_argument("image_dir", help="the target domain's images; svhn or usps is told from this path")
    parser.add_argument("out_csv", help="where image_name,label goes")
    parser.add_argument("--target", choices=sorted(TARGET_MODELS), default=None, help="default: from IMAGE_DIR")
    parser.add_argument("--usps_model", default=TARGET_MODELS["usps"], help="the MNIST-M -> USPS model")
    parser.add_argument("--svhn_model", default=TARGET_MODELS["svhn"], help="the MNIST-M -> SVHN model")
    known, extra = parser.parse_known_args(argv)
    target = known.target or target_domain(known.image_dir)
    model = known.usps_model if target == "usps" else known.svhn_model
    if model is None:
        raise FileNotFoundError(
            f"{known.image_dir} is an {target.upper()} folder, and no MNIST-M -> {target.upper()} model ships with "
            "the project (SVHN cannot be downloaded here to train one): train one with `accelerate launch "
            f"training/train_dann.py --target {target} ...` and pass it as --{target}_model DIR"
        )
    flags = ["--pretrained", model, "--input_dir", known.image_dir, "--output_csv", known.out_csv]
    return ["pipelines.dann", *flags, *extra]


def target_domain(image_dir: str) -> str:
    """`svhn` or `usps`, from the path of the image folder as the course tells them apart: the deepest part of the
    path that names one of them decides (`hw2_data/digits/usps/data` is usps); where the path as given names
    neither, the path a link leads to may."""
    for path in (Path(image_dir), Path(image_dir).resolve()):
        for part in reversed(path.parts):
            named = [domain for domain in TARGET_MODELS if domain in part.lower()]
            if len(named) > 1:
                raise ValueError(f"{image_dir}: {part!r} names both svhn and usps; give --target svhn or --target usps")
            if named:
                return named[0]
    raise ValueError(
        f"{image_dir}: the path names neither svhn nor usps, so the target domain is unknown; "
        "give --target svhn or --target usps"
    )


SCRIPTS = {"hw2_1": hw2_1, "hw2_2": hw2_2, "hw2_3": hw2_3}
COMMANDS = {
    "pipelines.conditional_ddpm": "pipelines.conditional_ddpm.course_output",
    "pipelines.ddim_from_noise": "pipelines.ddim_from_noise.cli",
    "pipelines.dann": "pipelines.dann.predict",
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in SCRIPTS:
        raise ValueError(f"name the course's script first: {', '.join(SCRIPTS)} (got {argv[0] if argv else 'nothing'})")
    command, *flags = SCRIPTS[argv[0]](argv[1:])
    module = __import__(COMMANDS[command], fromlist=["cli"])  # only the command this script needs is imported
    return module.cli(flags)


def cli(argv=None) -> None:
    run_command(main, None, argv)
