"""The DANN and face stages of the GPU suite. Both drive the project's own training commands, as users would."""

from __future__ import annotations

import time
from pathlib import Path

import torch

import hub_cards
from adapters.faces import load_face_noises
from benchmarks.gpu_suite.face_count import count_faces
from pipelines.ddim_from_noise import figures
from pipelines.ddim_from_noise.pipeline_ddim_from_noise import DDIMFromNoisePipeline
from pipelines.seeds import step_noise_generator
from training import train_dann, train_ddpm

MODES = ("source_only", "dann", "target_only")
# the shipped model's method, run with the improved recipe only: the report's network is there for the report's rows
IMPROVED_MODES = ("source_only", "dann", "mean_teacher", "target_only")


def dann_recipes(s) -> dict[str, list[str]]:
    """The course report's network and budget, and the recipe of the shipped hub_cards/dann-mnistm-usps
    (its mean_teacher run; dann adds the entropy term it has always had)."""
    return {
        # one checkpoint at the end: a save_state every epoch would write gigabytes over 100 epochs
        "report": [
            "--architecture",
            "report",
            "--batch_size",
            str(s.dann_report_batch),
            "--epochs",
            str(s.dann_report_epochs),
            "--learning_rate",
            "3e-4",
            "--checkpoint_every",
            str(s.dann_report_epochs),
            *s.dann_report_extra,
        ],
        "improved": [
            "--architecture",
            "improved",
            "--epochs",
            str(s.dann_improved_epochs),
            "--steps_per_epoch",
            str(s.dann_improved_steps),
            "--batch_size",
            "64",
            "--learning_rate",
            "1e-3",
            "--lr_schedule",
            "dann",
            "--augment",
            "--aug_rotation",
            "12",
            "--aug_scale",
            "1.1",
            "1.7",
            "--aug_translate",
            "0.08",
            "--aug_resample",
            "0.3",
            "--entropy_weight",
            "0.1",
            "--adapt_bn",
            "--checkpoint_every",
            str(s.dann_improved_epochs),
        ],
    }


def dann_stage(ctx) -> dict:
    """(d) source-only, DANN and target-only (and the mean teacher with the improved recipe), MNIST-M -> USPS, for
    each recipe; stops starting runs at the budget."""
    started, rows = time.perf_counter(), []
    budget = ctx.budget("dann")
    for recipe, extra in dann_recipes(ctx.sizes).items():
        for mode in IMPROVED_MODES if recipe == "improved" else MODES:
            if time.perf_counter() - started > budget:
                rows.append({"recipe": recipe, "mode": mode, "skipped": f"stage budget {budget:.0f} s spent"})
                continue
            argv = [
                "--source",
                "mnistm",
                "--target",
                "usps",
                "--source_dir",
                str(ctx.data / "mnistm"),
                "--target_dir",
                str(ctx.data / "usps"),
                "--mode",
                mode,
                "--seed",
                str(ctx.seed),
                "--output_dir",
                str(ctx.out / "dann" / f"{recipe}-{mode}"),
                *extra,
            ]
            final = train_dann.main(train_dann.parse_args(argv))
            rows.append(
                {
                    "recipe": recipe,
                    "mode": mode,
                    "argv": argv,
                    "target_val_accuracy": final["target_val_accuracy"],
                    "source_val_accuracy": final["source_val_accuracy"],
                    "images_seen": final["images_seen"],
                    "wall_time_s": final["wall_time_s"],
                }
            )
    return {"rows": rows}


def eta_grid_faces(ctx, model_dir: Path, training: torch.Tensor) -> dict:
    """The 40 images of the eta grid exactly as figures.py makes them, and how many of them are faces."""
    pipe = DDIMFromNoisePipeline.from_pretrained(str(model_dir), preset="course").to(ctx.device)
    pipe.set_progress_bar_config(disable=True)
    noises = load_face_noises(hub_cards.path("ddpm-lfw-faces") / "noise")
    grid = torch.stack([noises[name] for name in figures.GRID_NOISES])
    images = [
        pipe(
            grid,
            eta=eta,
            num_inference_steps=ctx.sizes.face_ddim_steps,
            output_type="pt",
            generator=step_noise_generator(ctx.seed, device=ctx.device),
        ).images
        for eta in figures.ETAS
    ]
    report = count_faces(torch.cat(images).float(), training)
    columns = len(figures.GRID_NOISES)
    report["faces_per_eta"] = {
        str(eta): sum(report["is_face"][i * columns : (i + 1) * columns]) for i, eta in enumerate(figures.ETAS)
    }
    return report


def faces_stage(ctx) -> dict:
    """(e) a better face model for the DDIM figures, judged by how many eta-grid images are faces."""
    s = ctx.sizes
    training = train_ddpm.load_training_images(ctx.data / "lfw_faces", 32, 1).float() / 255
    shipped = eta_grid_faces(ctx, hub_cards.path("ddpm-lfw-faces"), training)
    output = ctx.out / "faces-model"
    argv = [
        "--train_data",
        str(ctx.data / "lfw_faces"),
        "--channels",
        "1",
        "--resolution",
        "32",
        "--output_dir",
        str(output),
        "--report_to",
        "none",
        "--num_train_timesteps",
        "1000",
        "--block_out_channels",
        *map(str, s.face_unet),
        "--layers_per_block",
        str(s.face_layers),
        "--norm_num_groups",
        "8",
        "--train_batch_size",
        str(s.face_batch),
        "--learning_rate",
        "1e-3",
        "--lr_warmup_steps",
        str(min(200, s.face_steps // 5 or 1)),
        "--max_train_steps",
        str(s.face_steps),
        "--max_train_seconds",
        str(s.face_budget_s),
        "--random_flip",
        "--logging_steps",
        str(s.logging_steps),
        "--checkpointing_steps",
        str(s.face_steps),
        "--checkpoints_total_limit",
        "1",
        "--save_images_steps",
        str(10 * s.face_steps),
        "--sample_images",
        "16",
        "--sample_inference_steps",
        str(s.face_ddim_steps),
        *s.face_extra,
    ]
    result = train_ddpm.main(train_ddpm.parse_args(argv))
    trained = eta_grid_faces(ctx, output, training)
    figure_dir = ctx.out / "faces-figures"
    figures.main(
        figures.parse_args(
            [
                "--pretrained",
                str(output),
                "--noise_dir",
                str(hub_cards.path("ddpm-lfw-faces") / "noise"),
                "--output_dir",
                str(figure_dir),
                "--num_inference_steps",
                str(s.face_ddim_steps),
                "--device",
                ctx.device,
                "--seed",
                str(ctx.seed),
            ]
        )
    )
    return {
        "argv": argv,
        "steps": result.global_step,
        "train_seconds": result.seconds,
        "stopped_by_time": result.stopped_by_time,
        "final_loss": result.final_loss,
        "eta_grid_faces": {"shipped": shipped, "trained": trained},
        "figures": str(figure_dir),
    }
