"""Faults a user meets, injected into the commands as a user would run them: one `error:` line, exit status 2, no
traceback, and nothing of the user's changed, no staging folder or lock left, no code run from data.

Each case runs a command's `cli(argv)` in this process (what its console script and `python -m` run) against a
damaged input: a corrupt or truncated model folder, a folder of the wrong kind, an unreadable or oversized image,
an output path that cannot be written, a crafted pickle. The checks run before any model work, so every case is
fast. Folder guarantees (locks, signals, --overwrite) are tested in test_output_folders.py, training faults in
test_training_safety.py.
"""

import gzip
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import hub_cards
from pipelines.hub import publish

# A pickle that would leave this file behind if anything unpickled it.
CODE_RAN = Path(os.environ.get("TMPDIR", "/tmp")) / "guided-diffusion-da-fault-injection-code-ran"


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (CODE_RAN,))


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every entry under `folder` (hidden ones too) with its bytes (None for folders and other entries)."""
    return {
        str(path.relative_to(folder)): path.read_bytes() if path.is_file() and not path.is_symlink() else None
        for path in sorted(folder.rglob("*"))
    }


def one_error_line(cli, argv, capsys, folder: Path | None = None) -> str:
    """Run `cli(argv)` as a user would; the command must exit 2 with one `error:` line and no traceback, and leave
    `folder` (the test's files: the user's, the inputs, where the output would go) as it was."""
    before = tree(folder) if folder else None
    with pytest.raises(SystemExit) as exit_info:
        cli([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    if folder:
        assert tree(folder) == before  # nothing changed, no staging folder, temporary file or lock left
    return lines[0]


@pytest.fixture(autouse=True)
def _no_code_ran():
    CODE_RAN.unlink(missing_ok=True)
    yield
    assert not CODE_RAN.exists(), "a pickle from the test data was unpickled"


# ---- 3. no code runs from data: the Hub publisher ----------------------------------------------------------------


@pytest.fixture
def publishable(tmp_path):
    """A copy of a shipped folder: a card, code copies equal to the package, safetensors weights."""
    folder = tmp_path / "model"
    shutil.copytree(hub_cards.path("mnistm-digit-classifier"), folder)
    return folder


def _zip_pickle(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(_Exploit()))


PICKLES = {
    "weights.pth.tar": lambda path: path.write_bytes(pickle.dumps(_Exploit(), protocol=2)),
    "model.joblib": lambda path: path.write_bytes(pickle.dumps({"coef": [1.0]}, protocol=5)),
    "state.pkl.gz": lambda path: path.write_bytes(gzip.compress(pickle.dumps(_Exploit()))),
    "sub/notes.txt": lambda path: path.write_bytes(pickle.dumps(_Exploit(), protocol=0)),  # anywhere in the tree
    "extra.safetensors": _zip_pickle,
    "table.npy": lambda path: np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True),
    "optimizer.pt": lambda path: torch.save({"step": torch.tensor(1)}, path),
}


@pytest.mark.parametrize("name", sorted(PICKLES))
def test_publisher_refuses_a_pickle_whatever_its_name(publishable, name, capsys):
    path = publishable / name
    path.parent.mkdir(exist_ok=True)
    PICKLES[name](path)
    line = one_error_line(publish.cli, [publishable, "--repo_id", "me/x", "--dry_run"], capsys, publishable.parent)
    assert "pickled" in line and name in line


def test_publisher_lets_one_tensor_and_plain_arrays_go_up_and_keeps_bookkeeping_local(publishable, capsys):
    torch.save(torch.randn(1, 3, 4, 4), publishable / "00.pt")  # a course-format noise: data, not code
    np.save(publishable / "means.npy", np.arange(3.0))
    np.savez(publishable / "stats.npz", mean=np.arange(3.0))
    from adapters.ownership import LEGACY_MARKER as MARKER
    from training.run_folder import RUN_RECORD

    (publishable / MARKER).write_text("written by guided-diffusion-da\n")
    (publishable / RUN_RECORD).write_text("{}")
    listed = publish.main(publish.parse_args([str(publishable), "--repo_id", "me/x", "--dry_run"]))
    assert {"00.pt", "means.npy", "stats.npz", "model.safetensors"} <= set(listed)
    assert MARKER not in listed and RUN_RECORD not in listed
    assert not any(name.startswith(".") for name in capsys.readouterr().out.split())


def test_publisher_refuses_links_out_of_the_folder_and_entries_that_are_no_files(publishable, tmp_path, capsys):
    argv = [publishable, "--repo_id", "me/x", "--dry_run"]
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the Hub")
    (publishable / "notes.txt").symlink_to(secret)
    line = one_error_line(publish.cli, argv, capsys)
    assert "outside" in line and "notes.txt" in line
    (publishable / "notes.txt").unlink()
    (publishable / "more").symlink_to(tmp_path, target_is_directory=True)
    line = one_error_line(publish.cli, argv, capsys)
    assert "outside" in line and "more" in line
    (publishable / "more").unlink()
    (publishable / "gone.txt").symlink_to(publishable / "deleted.txt")
    assert "not regular files (gone.txt)" in one_error_line(publish.cli, argv, capsys)
    (publishable / "gone.txt").unlink()
    os.mkfifo(publishable / "pipe.bin")
    assert "not regular files (pipe.bin)" in one_error_line(publish.cli, argv, capsys)
    (publishable / "pipe.bin").unlink()
    (publishable / "card.md").symlink_to(publishable / "README.md")  # a link that stays inside is only a file
    assert "card.md" in publish.main(publish.parse_args([str(arg) for arg in argv]))


# ---- 4. no silently wrong result -----------------------------------------------------------------------------------

SHIPPED = {name: hub_cards.path(name) for name in hub_cards.names()}


def _commands():
    from pipelines.conditional_ddpm import course_output
    from pipelines.dann import predict
    from pipelines.ddim_from_noise import cli as ddim
    from pipelines.digit_classifier import score

    return course_output, predict, ddim, score


def _digit_images(folder: Path) -> Path:
    from PIL import Image

    if not folder.exists():
        folder.mkdir()
        for digit in range(3):
            pixels = torch.rand(28, 28, 3, generator=torch.Generator().manual_seed(digit))
            Image.fromarray((pixels * 255).byte().numpy()).save(folder / f"{digit}_001.png")
    return folder


def _run_with_model(command: str, model: Path, tmp_path: Path) -> tuple:
    """(cli, argv) of `command` given `model`, with inputs that are fine and an output that does not exist yet."""
    from pipelines.conditional_ddpm import figures as cfg_figures
    from pipelines.ddim_from_noise import figures as ddim_figures
    from training.report import dann_checkpoint, reproduce

    course_output, predict, ddim, score = _commands()
    images = _digit_images(tmp_path / "digits")
    noise = SHIPPED["ddpm-lfw-faces"] / "noise"
    return {
        "cfg-sample": (course_output.cli, ["--pretrained", model, "--output_dir", tmp_path / "out"]),
        "cfg-figures": (cfg_figures.cli, ["--pretrained", model, "--output_dir", tmp_path / "out"]),
        "report --cfg_pretrained": (reproduce.cli, ["--cfg_pretrained", model, "--output_dir", tmp_path / "out"]),
        "ddim": (ddim.cli, ["--pretrained", model, "--noise_dir", noise, "--output_dir", tmp_path / "out"]),
        "ddim-figures": (
            ddim_figures.cli,
            ["--pretrained", model, "--noise_dir", noise, "--output_dir", tmp_path / "o"],
        ),
        "report --faces_pretrained": (reproduce.cli, ["--faces_pretrained", model, "--output_dir", tmp_path / "out"]),
        "dann-predict": (
            predict.cli,
            ["--pretrained", model, "--input_dir", images, "--output_csv", tmp_path / "out.csv"],
        ),
        "dann-checkpoint": (dann_checkpoint.cli, ["--pretrained", model, "--output_json", tmp_path / "out.json"]),
        "score-digits": (score.cli, ["--pretrained", model, "--images", images, "--json", tmp_path / "out.json"]),
        "report --classifier": (reproduce.cli, ["--classifier", model, "--output_dir", tmp_path / "out"]),
    }[command]


@pytest.mark.parametrize(
    "command, model, is_, needs",
    [
        ("dann-predict", "mnistm-digit-classifier", "digit_classifier model", "dann model"),
        ("score-digits", "dann-mnistm-usps", "dann model", "digit_classifier model"),
        ("score-digits", "cfg-mnistm-small/unet", "UNet2DModel", "digit_classifier model"),
        ("ddim", "dann-mnistm-usps", "dann model", "UNet2DModel"),
        ("ddim", "cfg-mnistm-small", "class-conditional", "unconditional"),
        ("cfg-sample", "ddpm-lfw-faces", "DDIMFromNoisePipeline", "ConditionalDDPMPipeline"),
    ],
)
def test_a_model_folder_of_another_kind_is_an_error_naming_both(command, model, is_, needs, capsys, tmp_path):
    name, _, sub = model.partition("/")
    cli, argv = _run_with_model(command, SHIPPED[name] / sub, tmp_path)
    line = one_error_line(cli, argv, capsys, tmp_path)
    assert is_ in line and needs in line


def _rewrite_weights(folder: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    weights = folder / "model.safetensors"
    tensors = load_file(weights)
    change(tensors)
    save_file(tensors, weights, metadata={"format": "pt"})


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda tensors: tensors.pop("label_predictor.6.weight"), "1 of its tensors missing (e.g. label_predictor.6"),
        (lambda tensors: tensors.update(extra=torch.zeros(3)), "1 that are not part of it (e.g. extra)"),
        (
            lambda tensors: tensors.update({"label_predictor.6.bias": torch.zeros(11)}),
            "label_predictor.6.bias: (11,) in the file, (10,) in the model",
        ),
    ],
    ids=["missing", "unexpected", "reshaped"],
)
def test_weights_that_do_not_fill_the_model_are_an_error(change, words, capsys, tmp_path):
    from pipelines.dann.modeling_dann import DANNModel

    model = tmp_path / "model"
    shutil.copytree(SHIPPED["dann-mnistm-usps"], model)
    _rewrite_weights(model, change)
    cli, argv = _run_with_model("dann-predict", model, tmp_path)
    line = one_error_line(cli, argv, capsys, tmp_path)
    assert "does not fill the DANNModel that config.json describes" in line and words in line
    # in Python too: transformers alone would leave missing weights at random and drop the others
    with pytest.raises(ValueError, match="does not hold a DANNModel"):
        DANNModel.from_pretrained(model)


def _transparent(image, strokes: str):
    """A grey digit as RGBA: the ink opaque in one colour (white or black), the ground transparent."""
    from PIL import Image

    ink = np.asarray(image.convert("L"))
    colour = np.full_like(ink, 255 if strokes == "light" else 0)
    return Image.fromarray(np.dstack([colour, colour, colour, ink]), "RGBA")


@pytest.fixture(scope="module")
def real_digits(shared_data):
    """200 real USPS validation digits (the DANN model's target) and 200 MNIST digits (scored by the classifier)."""
    from adapters import load_digits

    usps = load_digits("usps", source=shared_data / "usps", split="validation").select(range(200))
    mnist = load_digits("mnist", source=shared_data / "mnist5k", split="train").shuffle(seed=0).select(range(200))
    return {"usps": (usps["image"], usps["label"]), "mnist": (mnist["image"], mnist["label"])}


@pytest.mark.parametrize("strokes", ["light", "dark"])
def test_digits_with_a_transparent_background_are_read_as_digits(real_digits, strokes, tmp_path):
    """Dropping the alpha channel showed the transparent pixels' colour (one flat colour: every digit the same
    label); laid on a ground that contrasts with the strokes, the accuracy stays that of the RGB images."""
    _, predict, _, score = _commands()
    accuracy = {}
    for form in ("rgb", "rgba"):
        images, labels = real_digits["usps"]
        folder = tmp_path / f"usps-{form}"
        folder.mkdir()
        for index, image in enumerate(images):
            (image.convert("RGB") if form == "rgb" else _transparent(image, strokes)).save(folder / f"{index:03d}.png")
        rows = predict.main(
            predict.parse_args(
                [
                    "--pretrained",
                    str(SHIPPED["dann-mnistm-usps"]),
                    "--input_dir",
                    str(folder),
                    "--output_csv",
                    str(tmp_path / f"usps-{form}.csv"),
                ]
            )
        )
        accuracy["dann", form] = np.mean([label == labels[int(name[:3])] for name, label, _ in rows])

        images, labels = real_digits["mnist"]
        folder = tmp_path / f"mnist-{form}"
        folder.mkdir()
        for index, (image, label) in enumerate(zip(images, labels)):
            picture = image.convert("RGB") if form == "rgb" else _transparent(image, strokes)
            picture.save(folder / f"{label}_{index:03d}.png")
        accuracy["classifier", form] = score.main(score.parse_args(["--images", str(folder)]))["accuracy"]
    for model in ("dann", "classifier"):
        assert accuracy[model, "rgb"] > 0.95, accuracy
        assert accuracy[model, "rgba"] >= accuracy[model, "rgb"] - 0.03, accuracy


def test_a_repeated_digit_is_refused(capsys, tmp_path):
    course_output, *_ = _commands()
    line = one_error_line(course_output.cli, ["--digits", "3", "3", "--output_dir", tmp_path / "out"], capsys, tmp_path)
    assert "--digits names 3 more than once" in line


# ---- 5. one line, not a traceback, and before the work ------------------------------------------------------------

# every command that loads a model, with the shipped folder of the kind it needs and that folder's files
MODEL_COMMANDS = {
    "cfg-sample": "cfg-mnistm-small",
    "cfg-figures": "cfg-mnistm-small",
    "report --cfg_pretrained": "cfg-mnistm-small",
    "ddim": "ddpm-lfw-faces",
    "ddim-figures": "ddpm-lfw-faces",
    "report --faces_pretrained": "ddpm-lfw-faces",
    "dann-predict": "dann-mnistm-usps",
    "dann-checkpoint": "dann-mnistm-usps",
    "score-digits": "mnistm-digit-classifier",
    "report --classifier": "mnistm-digit-classifier",
}
WEIGHTS = {"dann-mnistm-usps": "model.safetensors", "mnistm-digit-classifier": "model.safetensors"}
CONFIGS = {"cfg-mnistm-small": "model_index.json", "ddpm-lfw-faces": "unet/config.json"}


def _damage(folder: Path, fault: str) -> str:
    """Damage a copy of a shipped folder; returns the words its error line must hold."""
    weights = folder / WEIGHTS.get(folder.name, "unet/diffusion_pytorch_model.safetensors")
    config = folder / CONFIGS.get(folder.name, "config.json")
    if fault == "zero-byte weights":
        weights.write_bytes(b"")
        return "not a whole safetensors file"
    if fault == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:-1000])
        return "not a whole safetensors file"
    if fault == "invalid JSON config":
        config.write_text('{"_class_name": ')
        return f"{config.name} is not valid JSON"
    if fault == "config not an object":
        config.write_text("[]")
        return "holds a JSON list"
    if fault == "invalid scheduler config":
        (folder / "scheduler" / "scheduler_config.json").write_text("{")
        return "scheduler_config.json is not valid JSON"
    raise AssertionError(fault)


FOLDER_FAULTS = ["zero-byte weights", "truncated weights", "invalid JSON config", "config not an object"]


@pytest.mark.parametrize(
    "command, fault",
    [(command, fault) for command in sorted(MODEL_COMMANDS) for fault in FOLDER_FAULTS]
    + [(command, "invalid scheduler config") for command, folder in MODEL_COMMANDS.items() if folder in CONFIGS],
)
def test_a_damaged_model_folder_is_one_line_before_any_work(command, fault, capsys, tmp_path):
    shipped = MODEL_COMMANDS[command]
    model = tmp_path / shipped
    shutil.copytree(SHIPPED[shipped], model)
    words = _damage(model, fault)
    cli, argv = _run_with_model(command, model, tmp_path)
    line = one_error_line(cli, argv, capsys, tmp_path)
    assert words in line and str(model) in line


@pytest.fixture
def users_files(tmp_path):
    """A file and a folder of the user's that an output argument may wrongly name."""
    (tmp_path / "thesis.tex").write_text("years of work")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.csv").write_text("a,b\n")
    return tmp_path


@pytest.mark.parametrize(
    "command, option, target, words",
    [
        ("dann-predict", "--output_csv", "results", "is a folder; give the name of the file"),
        ("dann-predict", "--output_csv", "thesis.tex/pred.csv", "is a file, not a folder"),
        ("score-digits", "--json", "results", "is a folder; give the name of the file"),
        ("score-digits", "--json", "thesis.tex/score.json", "is a file, not a folder"),
        ("dann-checkpoint", "--output_json", "results", "is a folder; give the name of the file"),
        ("cfg-sample", "--output_dir", "thesis.tex", "is a file"),
        ("cfg-sample", "--output_dir", "thesis.tex/digits", "is a file, not a folder"),
        ("ddim", "--output_dir", "thesis.tex", "is a file"),
        ("cfg-figures", "--output_dir", "thesis.tex/figures", "is a file, not a folder"),
        ("report --classifier", "--output_dir", "thesis.tex", "is a file"),
        ("report --classifier", "--output_dir", "thesis.tex/report", "is a file, not a folder"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_the_work(
    command, option, target, words, users_files, capsys
):
    cli, argv = _run_with_model(command, SHIPPED[MODEL_COMMANDS[command]], users_files)
    argv = [*argv, option, users_files / target]  # argparse keeps the last value
    line = one_error_line(cli, argv, capsys, users_files)
    assert option in line and words in line


def test_noises_that_cannot_fit_are_refused_stating_the_limit(capsys, tmp_path):
    _, _, ddim, _ = _commands()
    out = tmp_path / "noise"
    line = one_error_line(ddim.cli, ["noise", "--output_dir", out, "--resolution", "100000"], capsys, tmp_path)
    assert "--resolution must be in [1, 4096], got 100000" in line
    line = one_error_line(ddim.cli, ["noise", "--output_dir", out, "--channels", "64"], capsys)
    assert "--channels must be in [1, 4]" in line
    free = shutil.disk_usage(tmp_path).free
    side = 4096
    count = min(1000, free // (4 * 4 * side * side) + 1)  # just more than the disk holds, if 1000 noises do
    if count * 4 * 4 * side * side <= free:
        pytest.skip("this disk holds even the largest noise set the command allows")
    argv = ["noise", "--output_dir", out, "--num_noises", count, "--channels", 4, "--resolution", side]
    assert "GiB free" in one_error_line(ddim.cli, argv, capsys, tmp_path)


@pytest.mark.parametrize("seed", [2**70, -1, 2**32])
@pytest.mark.parametrize("command", ["cfg-sample", "cfg-figures", "ddim", "ddim-figures", "noise"])
def test_a_seed_no_generator_takes_is_refused_naming_seed(command, seed, capsys, tmp_path):
    if command == "noise":
        _, _, ddim, _ = _commands()
        cli, argv = ddim.cli, ["noise", "--output_dir", tmp_path / "out"]
    else:
        cli, argv = _run_with_model(command, SHIPPED[MODEL_COMMANDS[command]], tmp_path)
    line = one_error_line(cli, [*argv, "--seed", seed], capsys, tmp_path)
    assert f"--seed must be in [0, 4294967295] (2**32 - 1), got {seed}" in line


def test_more_steps_than_trained_and_a_batch_of_zero_are_refused_before_the_work(capsys, tmp_path):
    course_output, _, _, score = _commands()
    argv = ["--pretrained", "cfg-mnistm-small", "--output_dir", tmp_path / "out", "--num_inference_steps", 100000]
    assert (
        "--num_inference_steps must be an int between 1 and the 400 steps the model was trained with"
        in one_error_line(course_output.cli, argv, capsys, tmp_path)
    )
    argv = ["--images", _digit_images(tmp_path / "digits"), "--batch_size", 0]
    assert "--batch_size must be >= 1, got 0" in one_error_line(score.cli, argv, capsys, tmp_path)


def _png_header_only(path: Path, side: int) -> None:
    """A PNG whose header claims side x side grey pixels: what a decompression bomb shows PIL before decoding."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def _truncated_png(path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])


BAD_IMAGES = {
    "decompression bomb": (lambda path: _png_header_only(path, 20_000), "too large an image to decode"),
    "PIL's warning zone": (lambda path: _png_header_only(path, 10_000), "too large an image to decode"),
    "over 4096 a side": (lambda path: _png_header_only(path, 5_000), "images are read up to 4096x4096"),
    "truncated": (_truncated_png, "image file is truncated"),
    "zero bytes": (lambda path: path.write_bytes(b""), "cannot identify image file"),
    "a folder": (lambda path: path.mkdir(), "not a regular file"),
    "a FIFO": (os.mkfifo, "not a regular file"),
}


@pytest.fixture
def deadline():
    """A read that blocks (a FIFO) fails the test after 30 s instead of hanging the suite."""
    import signal

    def expired(signum, frame):
        raise TimeoutError("the command blocked")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("fault", sorted(BAD_IMAGES))
@pytest.mark.parametrize("command", ["dann-predict", "score-digits", "ddim score --pred", "ddim score --gt"])
def test_a_bad_image_is_one_line_naming_it(command, fault, capsys, tmp_path, deadline):
    make, words = BAD_IMAGES[fault]
    if command.startswith("ddim"):
        _, _, ddim, _ = _commands()
        pred, gt = tmp_path / "pred", tmp_path / "gt"
        for folder in (pred, gt):
            shutil.copytree(SHIPPED["ddpm-lfw-faces"] / "GT", folder)
        bad = (pred if command.endswith("--pred") else gt) / "03.png"
        bad.unlink()
        cli, argv = ddim.cli, ["score", "--pred", pred, "--gt", gt]
    else:
        cli, argv = _run_with_model(command, SHIPPED[MODEL_COMMANDS[command]], tmp_path)
        bad = tmp_path / "digits" / "5_bad.png"
    make(bad)
    line = one_error_line(cli, argv, capsys, tmp_path)
    assert words in line and bad.name in line


def _link_to_fifo(path: Path) -> None:
    fifo = path.parent.parent / "fifo"
    os.mkfifo(fifo)
    path.symlink_to(fifo)


NOISE_FAULTS = {
    "a FIFO": lambda path: os.mkfifo(path),
    "a folder": lambda path: path.mkdir(),
    "a link to a FIFO": lambda path: (
        os.mkfifo(path.parent.parent / "fifo"),
        path.symlink_to(path.parent.parent / "fifo"),
    ),
    "zero bytes": lambda path: path.write_bytes(b""),
    "a crafted pickle": lambda path: path.write_bytes(pickle.dumps(_Exploit())),
    "a zip-pickle of objects": lambda path: torch.save({"noise": torch.randn(3), "step": 1, "exploit": None}, path),
}


@pytest.mark.parametrize("fault", sorted(NOISE_FAULTS))
def test_a_bad_noise_file_is_one_line_and_runs_nothing(fault, capsys, tmp_path, deadline):
    _, _, ddim, _ = _commands()
    noise = tmp_path / "noise"
    shutil.copytree(SHIPPED["ddpm-lfw-faces"] / "noise", noise)
    (noise / "01.pt").unlink()
    NOISE_FAULTS[fault](noise / "01.pt")
    argv = ["--pretrained", "ddpm-lfw-faces", "--noise_dir", noise, "--output_dir", tmp_path / "out"]
    line = one_error_line(ddim.cli, argv, capsys, tmp_path)
    assert "01.pt" in line


# --- an output file is never an input ------------------------------------------------------------------------


@pytest.fixture()
def digit_images(tmp_path):
    from PIL import Image

    folder = tmp_path / "digits"
    folder.mkdir()
    for digit in range(3):
        Image.new("RGB", (28, 28), color=(digit * 80, 0, 0)).save(folder / f"{digit}_001.png")
    return folder


@pytest.mark.parametrize("where", ["an image", "inside the image folder", "the image folder"])
@pytest.mark.parametrize("command", ["dann", "digit_classifier", "course_grader"])
def test_an_output_file_is_never_an_input(tmp_path, digit_images, capsys, where, command):
    from pipelines.dann import predict
    from pipelines.digit_classifier import score

    target = {
        "an image": digit_images / "1_001.png",
        "inside the image folder": digit_images / "report.csv",
        "the image folder": digit_images,
    }[where]
    if command == "dann":
        cli, argv = (
            predict.cli,
            ["--pretrained", "dann-mnistm-usps", "--input_dir", digit_images, "--output_csv", target],
        )
    else:
        cli, argv = score.cli, ["--images", digit_images, "--json", target]
        if command == "course_grader":
            torch.save({"state_dict": {}}, tmp_path / "Classifier.pth")
            argv += ["--course_classifier", tmp_path / "Classifier.pth"]
    line = one_error_line(cli, argv, capsys, tmp_path)
    assert "the input" in line, line
