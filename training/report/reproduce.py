"""Reproduce the whole course report — every figure and table — with one command.

    python -m training.report --profile quick --output_dir report/          # 2-core CPU, shipped models
    python -m training.report --profile full --output_dir report-full/ \
        --mnistm ../shared/data/mnistm --usps ../shared/data/usps --mnist ../shared/data/mnist5k   # a GPU

`quick` uses the shipped checkpoints and the embedded data and trains only the DANN rows, briefly.
`full` trains the conditional DDPM and every DANN mode with the report's budget (or better) on the
data you point at. Each stage records its settings in `OUTPUT_DIR/stages/<stage>.json` when it
finishes; a later run skips a finished stage whose settings are unchanged, so an interrupted run
resumes where it stopped. `--redo STAGE ...` (or `--redo all`) runs stages again.

The result is `OUTPUT_DIR/report.md`: the figures inline with captions that say which settings,
data and checkpoint made them, and the tables with the report's own numbers beside ours.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

import hub_cards
from adapters.folders import check_folder_location, write_folder_atomically, write_text_atomically
from pipelines.command_line import resolve_pretrained, run_command
from training.report.markdown import write_report

PROFILES = {
    "quick": {
        # DPM-Solver++ in 10 steps: the shipped model's digits at 0.99+ in minutes on a CPU (README's table).
        "cfg_scheduler": "dpm",
        "cfg_steps": 10,
        "images_per_digit": 100,
        "sweep_samples": 3,
        "ddim_steps": 50,
        "tsne_per_domain": 300,
        # The shipped MNIST-M -> USPS recipe, shortened to a few epochs of the embedded subsets.
        "dann_train_args": "--epochs 5 --augment --aug_scale 1.1 1.7 --aug_rotation 12 --aug_translate 0.08 "
        "--entropy_weight 0.1 --lr_schedule dann --adapt_bn",
        "cfg_train_args": None,
    },
    "full": {
        "cfg_scheduler": "ddpm",
        "cfg_steps": 400,
        "images_per_digit": 100,
        "sweep_samples": 10,
        "ddim_steps": 50,
        "tsne_per_domain": 1000,
        "dann_train_args": "--epochs 100 --augment --entropy_weight 0.1",
        # The report's budget is 25 epochs of 44,800 images at batch 256 (about 4,400 steps).
        "cfg_train_args": "--train_batch_size 256 --max_train_steps 4400 --learning_rate 1e-3",
    },
}


@dataclass
class Stage:
    name: str
    title: str
    run: Callable[[argparse.Namespace, Path], dict]
    settings: Callable[[argparse.Namespace], dict]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--output_dir", type=Path, default=Path("report"))
    parser.add_argument("--redo", nargs="*", default=[], help="stages to run again even if finished, or 'all'")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    data = parser.add_argument_group("data (default: the embedded subsets)")
    data.add_argument("--mnistm", default=None, help="MNIST-M source for load_digits (path or Hub id)")
    data.add_argument("--usps", default=None)
    data.add_argument("--mnist", default=None, help="MNIST; enables the MNIST -> MNIST-M scenario")
    data.add_argument("--svhn", default=None, help="SVHN; enables the MNIST-M -> SVHN scenario")
    models = parser.add_argument_group("checkpoints: a folder or a shipped model's name (default: the shipped ones)")
    models.add_argument("--cfg_pretrained", default="cfg-mnistm")
    models.add_argument("--classifier", default="mnistm-digit-classifier")
    models.add_argument("--faces_pretrained", default="ddpm-lfw-faces", help="a folder, shipped name or Hub id")
    models.add_argument("--noise_dir", default=None, help="NN.pt noises (default: <faces_pretrained>/noise)")
    models.add_argument("--gt_dir", default=None, help="NN.png ground truth (default: <faces_pretrained>/GT)")
    knobs = parser.add_argument_group("overrides of the profile's settings")
    for key, value in PROFILES["quick"].items():
        kind = str if key.endswith("_args") or key == "cfg_scheduler" else int
        knobs.add_argument(f"--{key}", type=kind, default=None, help=f"quick: {value}, full: {PROFILES['full'][key]}")
    args = parser.parse_args(argv)
    for key, value in PROFILES[args.profile].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    check_folder_location(args.output_dir, "--output_dir")  # stages fill it in place, run after run
    if args.profile == "full" and args.mnistm is None:
        parser.error("--profile full trains on the full data: pass --mnistm (and --usps) paths or Hub ids")
    # Later stages read these models; a mistyped or damaged folder fails now, not after an hour of earlier stages.
    from pipelines.digit_classifier.modeling_digit_classifier import DigitClassifier
    from pipelines.model_folders import check_pipeline_folder, check_transformers_folder, check_unet_folder

    if args.cfg_train_args is None:
        args.cfg_pretrained = resolve_pretrained(args.cfg_pretrained, "--cfg_pretrained", hub=False)
        check_pipeline_folder(args.cfg_pretrained, "ConditionalDDPMPipeline", "--cfg_pretrained")
    args.classifier = resolve_pretrained(args.classifier, "--classifier", hub=False)
    check_transformers_folder(args.classifier, DigitClassifier, "--classifier")
    args.faces_pretrained = resolve_pretrained(args.faces_pretrained, "--faces_pretrained")
    check_unet_folder(args.faces_pretrained, "--faces_pretrained")
    args.noise_dir = args.noise_dir or str(Path(args.faces_pretrained) / "noise")
    args.gt_dir = args.gt_dir or str(Path(args.faces_pretrained) / "GT")
    return args


# ---- stages --------------------------------------------------------------------------------------------


def _cfg_checkpoint(args) -> str:
    """The conditional DDPM the figures use: the shipped one, or the one `full` trains."""
    return str(args.output_dir / "models" / "cfg-mnistm") if args.cfg_train_args else args.cfg_pretrained


def train_cfg_stage(args, out: Path) -> dict:
    from training import train_cfg

    # "latest" continues an interrupted run from its newest checkpoint-N (and starts afresh when there is none).
    train_argv = [
        "--output_dir",
        _cfg_checkpoint(args),
        "--train_data",
        args.mnistm,
        "--resume_from_checkpoint",
        "latest",
        *args.cfg_train_args.split(),
    ]
    train_cfg.main(train_cfg.parse_args(train_argv))
    return {"checkpoint": _cfg_checkpoint(args)}


def cfg_figures_stage(args, out: Path) -> dict:
    from pipelines.conditional_ddpm import figures as cfg_figures

    cfg_figures.main(
        cfg_figures.parse_args(
            [
                "--pretrained",
                _cfg_checkpoint(args),
                "--output_dir",
                str(out),
                "--scheduler",
                args.cfg_scheduler,
                "--num_inference_steps",
                str(args.cfg_steps),
                "--sweep_samples",
                str(args.sweep_samples),
                "--device",
                args.device,
                "--skip_torchview",
            ]
        )
    )
    return {"checkpoint": _cfg_checkpoint(args)}


def cfg_accuracy_stage(args, out: Path) -> dict:
    from pipelines.conditional_ddpm import course_output as conditional_ddpm
    from pipelines.digit_classifier import score as score_digits

    images = args.output_dir / "work" / "digits"
    if images.exists():
        shutil.rmtree(images)  # a half-written folder from an interrupted run must not be scored
    conditional_ddpm.main(
        conditional_ddpm.parse_args(
            [
                "--pretrained",
                _cfg_checkpoint(args),
                "--output_dir",
                str(images),
                "--scheduler",
                args.cfg_scheduler,
                "--num_inference_steps",
                str(args.cfg_steps),
                "--images_per_digit",
                str(args.images_per_digit),
                "--device",
                args.device,
            ]
        )
    )
    report = score_digits.main(
        score_digits.parse_args(
            ["--pretrained", args.classifier, "--images", str(images), "--json", str(out / "digit_accuracy.json")]
        )
    )
    return {"accuracy": report["accuracy"], "per_digit": report.get("per_digit"), "images": report["total"]}


def ddim_figures_stage(args, out: Path) -> dict:
    from pipelines.ddim_from_noise import figures as ddim_figures

    ddim_figures.main(
        ddim_figures.parse_args(
            [
                "--pretrained",
                args.faces_pretrained,
                "--noise_dir",
                args.noise_dir,
                "--output_dir",
                str(out),
                "--num_inference_steps",
                str(args.ddim_steps),
                "--device",
                args.device,
            ]
        )
    )
    return {"checkpoint": args.faces_pretrained, "noise_dir": args.noise_dir}


def ddim_mse_stage(args, out: Path) -> dict:
    from adapters.faces import face_mse
    from pipelines.ddim_from_noise import cli as ddim

    predictions = args.output_dir / "work" / "ddim_pred"
    ddim.main(
        [
            "--pretrained",
            args.faces_pretrained,
            "--noise_dir",
            args.noise_dir,
            "--output_dir",
            str(predictions),
            "--num_inference_steps",
            str(args.ddim_steps),
            "--preset",
            "course",
            "--device",
            args.device,
            "--overwrite",  # the predictions of an earlier run are replaced whole
        ]
    )
    scores = face_mse(predictions, args.gt_dir)
    table = {name: float(value) for name, value in scores.items()}
    (out / "mse.json").write_text(json.dumps(table, indent=2))
    return {"mse": table, "mean_mse": sum(table.values()) / len(table), "gt_dir": args.gt_dir}


def dann_scenarios(args) -> list[tuple[str, str, str | None, str | None]]:
    scenarios = [("mnistm", "usps", args.mnistm, args.usps)]
    if args.mnist:
        scenarios.append(("mnist", "mnistm", args.mnist, args.mnistm))
    if args.svhn:
        scenarios.append(("mnistm", "svhn", args.mnistm, args.svhn))
    return scenarios


def shipped_accuracy(folder: Path, target: str, target_dir) -> float:
    """Target validation accuracy of a shipped DANN checkpoint, beside the rows trained here."""
    import torch

    from adapters import decode_digits, load_digits, to_model_range
    from pipelines.dann.modeling_dann import DANNModel

    images, labels = decode_digits(load_digits(target, source=target_dir, split="validation"))
    with torch.no_grad():
        predictions = DANNModel.from_pretrained(str(folder)).predict(to_model_range(images))
    return float((predictions == labels).float().mean())


def dann_settings(args, source_dir, target_dir) -> dict:
    return {
        "source_dir": source_dir or "embedded subset",
        "target_dir": target_dir or "embedded subset",
        "train_args": args.dann_train_args,
        "tsne_per_domain": args.tsne_per_domain,
    }


def dann_stage(source: str, target: str, source_dir, target_dir) -> Callable:
    def run(args, out: Path) -> dict:
        from training.report import dann_experiments

        # Runs live in a folder named after the settings: a resumed stage reuses its finished modes,
        # a stage with new settings never reads runs trained with the old ones.
        key = hashlib.sha1(json.dumps(dann_settings(args, source_dir, target_dir), sort_keys=True).encode())
        runs_dir = args.output_dir / "work" / "dann" / key.hexdigest()[:12]
        argv = [
            "--source",
            source,
            "--target",
            target,
            "--runs_dir",
            str(runs_dir),
            "--figures_dir",
            str(out),
            "--tsne_per_domain",
            str(args.tsne_per_domain),
        ]
        if source_dir:
            argv += ["--source_dir", source_dir]
        if target_dir:
            argv += ["--target_dir", target_dir]
        dann_experiments.main(dann_experiments.parse_args([*argv, "--", *args.dann_train_args.split()]))
        result = json.loads((out / f"{source}-{target}.json").read_text())
        if f"dann-{source}-{target}" in hub_cards.names():
            shipped = hub_cards.path(f"dann-{source}-{target}")
            result["shipped_dann_accuracy"] = shipped_accuracy(shipped, target, target_dir)
            shipped_metrics = json.loads((shipped / "metrics.json").read_text())
            steps = f", {shipped_metrics['steps']} steps" if "steps" in shipped_metrics else ""
            result["shipped_dann_recipe"] = f"{shipped_metrics.get('mode', 'dann')}{steps}"
        return result

    return run


def build_stages(args) -> list[Stage]:
    common = {"device": args.device}
    cfg = {"checkpoint": _cfg_checkpoint(args), "scheduler": args.cfg_scheduler, "steps": args.cfg_steps}
    faces = {"checkpoint": args.faces_pretrained, "noise_dir": args.noise_dir, "steps": args.ddim_steps}
    stages = []
    if args.cfg_train_args:
        stages.append(
            Stage(
                "cfg_train",
                "training the conditional DDPM",
                train_cfg_stage,
                lambda a: {"data": a.mnistm, "train_args": a.cfg_train_args},
            )
        )
    stages += [
        Stage(
            "cfg_figures",
            "digit grid, reverse process, guidance sweep, architecture",
            cfg_figures_stage,
            lambda a: {**common, **cfg, "sweep_samples": a.sweep_samples},
        ),
        Stage(
            "cfg_accuracy",
            "1000 digits scored by the classifier",
            cfg_accuracy_stage,
            lambda a: {**common, **cfg, "images_per_digit": a.images_per_digit, "classifier": a.classifier},
        ),
        Stage(
            "ddim_figures", "eta grid, eta 0.5 twice, slerp and lerp", ddim_figures_stage, lambda a: {**common, **faces}
        ),
        Stage(
            "ddim_mse",
            "DDIM MSE against ground truth",
            ddim_mse_stage,
            lambda a: {**common, **faces, "gt_dir": a.gt_dir},
        ),
    ]
    for source, target, source_dir, target_dir in dann_scenarios(args):
        stages.append(
            Stage(
                f"dann_{source}_{target}",
                f"DANN {source} -> {target}: three modes, t-SNE",
                dann_stage(source, target, source_dir, target_dir),
                lambda a, s=source_dir, t=target_dir: dann_settings(a, s, t),
            )
        )
    return stages


# ---- driver ------------------------------------------------------------------------------------------


def _record_path(args, stage: Stage) -> Path:
    return args.output_dir / "stages" / f"{stage.name}.json"


def is_finished(args, stage: Stage) -> bool:
    record = _record_path(args, stage)
    if "all" in args.redo or stage.name in args.redo or not record.exists():
        return False
    return json.loads(record.read_text()).get("settings") == stage.settings(args)


def run_stage_atomically(args, stage: Stage) -> dict:
    """Run a stage into a fresh folder that replaces its figures whole, then write its record (the "finished" flag)."""
    out = args.output_dir / "figures" / stage.name
    started = time.perf_counter()
    # A stage fills a fresh folder that replaces `out` only when it finishes: figures of a failed or
    # interrupted run never sit beside those of an earlier one.
    result = write_folder_atomically(out, lambda staging: stage.run(args, staging))
    record = {
        "title": stage.title,
        "settings": stage.settings(args),
        "result": result,
        "seconds": round(time.perf_counter() - started, 1),
        "figures": sorted(str(p.relative_to(args.output_dir)) for p in out.iterdir() if p.is_file()),
    }
    path = _record_path(args, stage)
    write_text_atomically(path, json.dumps(record, indent=2))  # the record is the "finished" flag: written last
    return record


def main(args) -> dict:
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stages = build_stages(args)
    unknown = set(args.redo) - {s.name for s in stages} - {"all"}
    if unknown:
        raise ValueError(f"--redo: unknown stage(s) {sorted(unknown)}; stages: {[s.name for s in stages]}")
    records, skipped = {}, []
    progress = tqdm(stages, desc="report", unit="stage")
    for stage in progress:
        progress.set_postfix_str(stage.name)
        if is_finished(args, stage):
            skipped.append(stage.name)
            records[stage.name] = json.loads(_record_path(args, stage).read_text())
            continue
        records[stage.name] = run_stage_atomically(args, stage)
    report = write_report(args, records)
    print(f"wrote {report} ({len(stages) - len(skipped)} stage(s) run, skipped finished: {skipped or 'none'})")
    return {"report": report, "skipped": skipped, "records": records}


def cli(argv=None) -> None:
    run_command(main, parse_args, argv)


if __name__ == "__main__":
    cli()
