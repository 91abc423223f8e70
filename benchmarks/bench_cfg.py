"""Training throughput and the time to make 1000 digits with the conditional DDPM, on the current device.

    python benchmarks/bench_cfg.py --pretrained hub_cards/cfg-mnistm --device cuda           # a GPU, as shipped
    python benchmarks/bench_cfg.py --pretrained hub_cards/cfg-mnistm --device cuda \\
        --batch_size 1024 --rng device --bf16 --compile                                      # the fast settings
    OMP_NUM_THREADS=1 python benchmarks/bench_cfg.py --pretrained hub_cards/cfg-mnistm --device cpu \\
        --num_images 100 --train_steps 10 --num_threads 1                                    # a CPU, scaled down

Measured, with the data already on the device and CUDA-synchronised wall clocks:
  train  images/s of whole optimizer steps (forward, MSE on the noise, backward, AdamW) of training/diffusion_step.py's
         loss, and the report's training budget (25 epochs x 44,800 images) converted to seconds at that rate.
         --rng host draws noise, t and label dropout on the CPU exactly as training/train_cfg.py does;
         --rng device draws them on the device (no host-to-device copy per step).
  ddpm   seconds to make --num_images digits (0-9 in equal numbers) with all DDPM steps (400) at guidance w.
  ddim   the same with --ddim_steps (50) DDIM steps.
When --num_images < 1000 the time for 1000 is extrapolated linearly and marked "extrapolated": sampling cost
is linear in the batch on a CPU, not on a GPU, so a GPU should always be run with the full 1000.
Warm-up (and torch.compile) time is reported apart from the timed runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler

from adapters import decode_digits, load_digits
from pipelines.conditional_ddpm.figures import forward_gflop
from pipelines.conditional_ddpm.pipeline_conditional_ddpm import NUM_DIGITS, ConditionalDDPMPipeline
from training.diffusion_args import build_unet
from training.diffusion_step import diffusion_loss, micro_step_generator

REPORT_TRAIN_IMAGES = 25 * 44_800  # the report's budget: 25 epochs of the course's 44,800 training images
REFERENCE_H200 = {  # REFERENCE.md, one NVIDIA H200, single runs
    "train": "report's ContextUnet: 4,233 img/s, 262 s for the budget; UNet2DModel (64,128,256): 5,374 img/s; "
             "goal: the shipped quality in <= 60 s",
    "ddpm": "report's ContextUnet: 56 s; UNet2DModel (64,128,256) bf16 eager: 43 s; goal: <= 8 s",
    "ddim": "(not measured in REFERENCE.md)",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", default=None,
                        help="ConditionalDDPMPipeline folder; default: a fresh UNet of --block_out_channels")
    parser.add_argument("--block_out_channels", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--norm_num_groups", type=int, default=4)
    parser.add_argument("--layers_per_block", type=int, default=1)
    parser.add_argument("--num_train_timesteps", type=int, default=400)
    parser.add_argument("--train_data", default=None, help="MNIST-M source (adapters.load_digits); default: embedded")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--measure", nargs="+", default=["train", "ddpm", "ddim"], choices=["train", "ddpm", "ddim"])
    parser.add_argument("--batch_size", type=int, default=256, help="training batch (the report's 256)")
    parser.add_argument("--train_steps", type=int, default=50, help="timed optimizer steps")
    parser.add_argument("--warmup_steps", type=int, default=3, help="untimed steps first (compilation, caches)")
    parser.add_argument("--rng", choices=["host", "device"], default="host")
    parser.add_argument("--label_dropout", type=float, default=0.1)
    parser.add_argument("--num_images", type=int, default=1000, help="a multiple of 10")
    parser.add_argument("--guidance", type=float, default=2.0, help="w; w > 0 costs 2 UNet forwards per step")
    parser.add_argument("--ddim_steps", type=int, default=50)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast for training and sampling")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    parser.add_argument("--compile_mode", default=None,
                        help="torch.compile mode; default 'reduce-overhead' (CUDA graphs) on CUDA, else torch's")
    parser.add_argument("--num_threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_json", default="runs/bench_cfg.json")
    args = parser.parse_args(argv)
    if args.num_images < NUM_DIGITS or args.num_images % NUM_DIGITS:
        raise ValueError(f"--num_images must be a positive multiple of {NUM_DIGITS}, got {args.num_images}")
    if min(args.batch_size, args.train_steps) < 1 or args.warmup_steps < 0:
        raise ValueError("--batch_size and --train_steps must be >= 1, --warmup_steps >= 0")
    return args


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} torch threads)"


class Stopwatch:
    """Wall-clock seconds that include all queued GPU work (synchronises CUDA at both ends)."""

    def __init__(self, device: torch.device):
        self.device = device

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self):
        self._sync()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self._sync()
        self.seconds = time.perf_counter() - self.start


def load_model(args, device: torch.device):
    if args.pretrained:
        if not Path(args.pretrained).is_dir():
            raise FileNotFoundError(f"pipeline folder {args.pretrained} does not exist")
        pipe = ConditionalDDPMPipeline.from_pretrained(args.pretrained)
        return pipe.unet.to(device), pipe.scheduler, pipe.config.null_class_id
    torch.manual_seed(args.seed)
    unet_args = argparse.Namespace(resolution=28, block_out_channels=args.block_out_channels,
                                   layers_per_block=args.layers_per_block, norm_num_groups=args.norm_num_groups)
    unet = build_unet(unet_args, channels=3, num_class_embeds=NUM_DIGITS + 1)
    return unet.to(device), DDPMScheduler(num_train_timesteps=args.num_train_timesteps), NUM_DIGITS


def maybe_compile(unet, args, device: torch.device):
    if not args.compile:
        return unet
    mode = args.compile_mode or ("reduce-overhead" if device.type == "cuda" else None)
    return torch.compile(unet, mode=mode)


def autocast(args, device: torch.device):
    if not args.bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def device_side_loss(unet, noise_scheduler, clean, labels, generator, label_dropout, null_class_id):
    """diffusion_loss with every random draw made on the device: no host-to-device copy per step."""
    batch = clean.shape[0]
    noise = torch.randn(clean.shape, generator=generator, device=clean.device)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch,), generator=generator,
                              device=clean.device)
    dropped = torch.rand(batch, generator=generator, device=clean.device) < label_dropout
    labels = torch.where(dropped, null_class_id, labels)
    noise_pred = unet(noise_scheduler.add_noise(clean, noise, timesteps), timesteps, class_labels=labels).sample
    return F.mse_loss(noise_pred.float(), noise.float())


def bench_train(unet, noise_scheduler, null_class_id, images, labels, args, device) -> dict:
    """Images per second of whole optimizer steps; the data live on the device, as uint8."""
    model = maybe_compile(unet.train(), args, device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    device_generator = torch.Generator(device).manual_seed(args.seed)
    index_generator = torch.Generator(device).manual_seed(args.seed + 1)

    def step(i):
        index = torch.randint(0, len(images), (args.batch_size,), generator=index_generator, device=device)
        clean = images[index].float().div(127.5).sub(1.0)
        with autocast(args, device):
            if args.rng == "host":
                loss = diffusion_loss(model, noise_scheduler, clean, labels[index],
                                      micro_step_generator(args.seed, 0, i), args.label_dropout, null_class_id)
            else:
                loss = device_side_loss(model, noise_scheduler, clean, labels[index], device_generator,
                                        args.label_dropout, null_class_id)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with Stopwatch(device) as warmup:
        for i in range(args.warmup_steps):
            step(i)
    with Stopwatch(device) as timed:
        for i in range(args.warmup_steps, args.warmup_steps + args.train_steps):
            step(i)
    images_per_s = args.train_steps * args.batch_size / timed.seconds
    return {"measure": "train", "setting": f"batch {args.batch_size}, {args.train_steps} timed steps, rng {args.rng}",
            "warmup_s": warmup.seconds, "timed_s": timed.seconds, "images_per_s": images_per_s,
            "report_budget_s": REPORT_TRAIN_IMAGES / images_per_s}


def bench_sampling(unet, scheduler, null_class_id, steps: int, name: str, args, device) -> dict:
    pipe = ConditionalDDPMPipeline(unet.eval(), scheduler, null_class_id).to(device)
    pipe.unet = maybe_compile(pipe.unet, args, device)
    pipe.set_progress_bar_config(disable=True)
    per_digit = args.num_images // NUM_DIGITS

    def run(num_inference_steps):
        with autocast(args, device):
            pipe(digit=list(range(NUM_DIGITS)), guidance=args.guidance, num_images_per_digit=per_digit,
                 num_inference_steps=num_inference_steps, generator=torch.Generator().manual_seed(args.seed),
                 output_type="pt")

    with Stopwatch(device) as warmup:
        run(2)  # same batch shape: compiles / captures graphs and warms caches, then the timed run
    with Stopwatch(device) as timed:
        run(steps)
    result = {"measure": name, "setting": f"{steps} steps, w = {args.guidance:g}, {args.num_images} images",
              "warmup_s": warmup.seconds, "timed_s": timed.seconds, "seconds_for_1000": timed.seconds,
              "extrapolated": args.num_images != 1000}
    if result["extrapolated"]:
        result["seconds_for_1000"] = timed.seconds * 1000 / args.num_images
    return result


def format_table(report: dict) -> str:
    lines = [f"device: {report['device']}; UNet {report['params'] / 1e6:.3f}M parameters, "
             f"{report['gflop_per_image']:.3f} GFLOP per forward; precision {report['precision']}; "
             f"compile {report['compile']}",
             "",
             "| measure | setting | warm-up (s) | timed (s) | result | H200 reference (REFERENCE.md) |",
             "|---|---|---|---|---|---|"]
    for r in report["results"]:
        if r["measure"] == "train":
            result = f"{r['images_per_s']:,.0f} img/s; report budget {r['report_budget_s']:,.0f} s"
        else:
            result = f"1000 images: {r['seconds_for_1000']:,.1f} s" + (" (extrapolated)" if r["extrapolated"] else "")
        lines.append(f"| {r['measure']} | {r['setting']} | {r['warmup_s']:.1f} | {r['timed_s']:.1f} | {result} | "
                     f"{REFERENCE_H200[r['measure']]} |")
    return "\n".join(lines)


def main(args) -> dict:
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    device = torch.device(args.device)
    unet, scheduler, null_class_id = load_model(args, device)
    report = {"device": device_name(device), "torch": torch.__version__, "pretrained": args.pretrained,
              "params": sum(p.numel() for p in unet.parameters()), "gflop_per_image": forward_gflop(unet),
              "precision": "bf16 autocast" if args.bf16 else "fp32", "compile": args.compile, "results": []}
    if "train" in args.measure:
        images, labels = decode_digits(load_digits("mnistm", args.train_data, "train"), image_size=28)
        # A copy: the timed optimizer steps must not change the weights that the sampling runs use.
        train_unet = type(unet).from_config(unet.config).to(device)
        train_unet.load_state_dict(unet.state_dict())
        report["train_images"] = len(labels)
        report["results"].append(bench_train(train_unet, DDPMScheduler.from_config(scheduler.config), null_class_id,
                                             images.to(device), labels.to(device), args, device))
        del train_unet
    if "ddpm" in args.measure:
        ddpm = DDPMScheduler.from_config(scheduler.config)
        report["results"].append(bench_sampling(unet, ddpm, null_class_id, ddpm.config.num_train_timesteps, "ddpm",
                                                args, device))
    if "ddim" in args.measure:
        report["results"].append(bench_sampling(unet, DDIMScheduler.from_config(scheduler.config), null_class_id,
                                                args.ddim_steps, "ddim", args, device))
    Path(args.output_json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output_json).write_text(json.dumps(report, indent=2))
    print(format_table(report))
    return report


if __name__ == "__main__":
    main(parse_args())
