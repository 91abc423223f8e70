"""Time DDIM sampling from given noises: 50 steps for 10 images by default.

    # the shipped LFW model on the CPU
    python -m benchmarks.bench_ddim --device cpu
    # a randomly initialised UNet2DModel of the DDPM CelebA-HQ 256 architecture (~114M parameters,
    # 256x256, the size of the course's face model), on a GPU
    python -m benchmarks.bench_ddim --celebahq --device cuda [--dtype bf16]

Prints one JSON line: the model, its parameter count, the device and the seconds of the timed run
(after one warm-up call of 1 step).
"""

import argparse
import json
import platform
import time

import torch
from diffusers import UNet2DModel

from pipelines.command_line import resolve_pretrained
from pipelines.ddim_from_noise.pipeline_ddim_from_noise import DDIMFromNoisePipeline

# google/ddpm-celebahq-256 (Ho et al. 2020), as stored in its unet/config.json.
CELEBAHQ_256 = dict(
    sample_size=256,
    in_channels=3,
    out_channels=3,
    layers_per_block=2,
    block_out_channels=(128, 128, 256, 256, 512, 512),
    down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
    norm_eps=1e-6,
    norm_num_groups=32,
)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Time DDIM sampling from given noises.")
    parser.add_argument(
        "--pretrained",
        default="ddpm-lfw-faces",
        help="UNet2DModel folder or a shipped model's name (ignored with --celebahq)",
    )
    parser.add_argument("--celebahq", action="store_true", help="random UNet of the DDPM CelebA-HQ 256 architecture")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--num_images", type=int, default=10)
    parser.add_argument("--num_inference_steps", type=int, default=50)
    parser.add_argument("--eta", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    return parser.parse_args(argv)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.celebahq:
        torch.manual_seed(0)
        unet, model = UNet2DModel(**CELEBAHQ_256), "random UNet2DModel, DDPM CelebA-HQ 256 architecture"
    else:
        unet, model = DDIMFromNoisePipeline.from_pretrained(resolve_pretrained(args.pretrained)).unet, args.pretrained
    pipe = DDIMFromNoisePipeline.from_unet(unet.to(args.device, DTYPES[args.dtype]).eval(), preset="course")
    pipe.set_progress_bar_config(disable=True)
    size, channels = unet.config.sample_size, unet.config.in_channels
    noise = torch.randn(args.num_images, channels, size, size, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator(args.device).manual_seed(0)

    pipe(noise, eta=args.eta, num_inference_steps=1, generator=generator, output_type="pt")  # warm-up
    synchronize(args.device)
    start = time.perf_counter()
    pipe(noise, eta=args.eta, num_inference_steps=args.num_inference_steps, generator=generator, output_type="pt")
    synchronize(args.device)
    seconds = time.perf_counter() - start

    result = dict(
        model=model,
        parameters=sum(p.numel() for p in unet.parameters()),
        resolution=size,
        device=torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu",
        threads=torch.get_num_threads(),
        dtype=args.dtype,
        num_images=args.num_images,
        num_inference_steps=args.num_inference_steps,
        seconds=round(seconds, 3),
        images_per_second=round(args.num_images / seconds, 3),
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(parse_args())
