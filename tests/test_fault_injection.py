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


def one_error_line(cli, argv, capsys) -> str:
    """Run `cli(argv)` as a user would; the command must exit 2 with one `error:` line and no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        cli([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def unchanged(tmp_path):
    """Yields tmp_path; afterwards nothing in it may have changed, appeared (staging, locks) or vanished."""
    before = tree(tmp_path)
    yield tmp_path
    assert tree(tmp_path) == before


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
    before = tree(publishable.parent)
    line = one_error_line(publish.cli, [publishable, "--repo_id", "me/x", "--dry_run"], capsys)
    assert "pickled" in line and name in line
    assert tree(publishable.parent) == before


def test_publisher_lets_one_tensor_and_plain_arrays_go_up_and_keeps_bookkeeping_local(publishable, capsys):
    torch.save(torch.randn(1, 3, 4, 4), publishable / "00.pt")  # a course-format noise: data, not code
    np.save(publishable / "means.npy", np.arange(3.0))
    np.savez(publishable / "stats.npz", mean=np.arange(3.0))
    from adapters.folders import MARKER
    from training.run_folder import RUN_RECORD

    (publishable / MARKER).write_text("written by guided-diffusion-da\n")
    (publishable / RUN_RECORD).write_text("{}")
    listed = publish.main(publish.parse_args([str(publishable), "--repo_id", "me/x", "--dry_run"]))
    assert {"00.pt", "means.npy", "stats.npz", "model.safetensors"} <= set(listed)
    assert MARKER not in listed and RUN_RECORD not in listed
    assert not any(name.startswith(".") for name in capsys.readouterr().out.split())


def test_publisher_refuses_a_link_out_of_the_folder(publishable, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the Hub")
    (publishable / "notes.txt").symlink_to(secret)
    line = one_error_line(publish.cli, [publishable, "--repo_id", "me/x", "--dry_run"], capsys)
    assert "outside" in line and "notes.txt" in line
    (publishable / "notes.txt").unlink()
    (publishable / "more").symlink_to(tmp_path, target_is_directory=True)
    line = one_error_line(publish.cli, [publishable, "--repo_id", "me/x", "--dry_run"], capsys)
    assert "outside" in line and "more" in line
    (publishable / "more").unlink()
    (publishable / "card.md").symlink_to(publishable / "README.md")  # a link that stays inside is only a file
    assert "card.md" in publish.main(publish.parse_args([str(publishable), "--repo_id", "me/x", "--dry_run"]))


# ---- 4. no silently wrong result -----------------------------------------------------------------------------------

SHIPPED = {name: hub_cards.path(name) for name in hub_cards.names()}


def _commands():
    from pipelines.conditional_ddpm import course_output
    from pipelines.dann import predict
    from pipelines.ddim_from_noise import cli as ddim
    from pipelines.digit_classifier import score

    return course_output, predict, ddim, score


def _run_with_model(command: str, model: Path, tmp_path: Path) -> tuple:
    """(cli, argv) of `command` given `model`, with inputs that are fine and an output that does not exist yet."""
    course_output, predict, ddim, score = _commands()
    images = tmp_path / "digits"
    if not images.exists():
        images.mkdir()
        for digit in range(3):
            torch.manual_seed(digit)
            from PIL import Image

            Image.fromarray((torch.rand(28, 28, 3) * 255).byte().numpy()).save(images / f"{digit}_001.png")
    noise = SHIPPED["ddpm-lfw-faces"] / "noise"
    return {
        "cfg-sample": (course_output.cli, ["--pretrained", model, "--output_dir", tmp_path / "out"]),
        "dann-predict": (
            predict.cli,
            ["--pretrained", model, "--input_dir", images, "--output_csv", tmp_path / "out.csv"],
        ),
        "ddim": (ddim.cli, ["--pretrained", model, "--noise_dir", noise, "--output_dir", tmp_path / "out"]),
        "score-digits": (score.cli, ["--pretrained", model, "--images", images, "--json", tmp_path / "out.json"]),
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
    before = tree(tmp_path)
    line = one_error_line(cli, argv, capsys)
    assert is_ in line and needs in line
    assert tree(tmp_path) == before


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
    before = tree(tmp_path)
    line = one_error_line(cli, argv, capsys)
    assert "does not fill the DANNModel that config.json describes" in line and words in line
    assert tree(tmp_path) == before
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


def test_a_repeated_digit_is_refused(capsys, unchanged):
    course_output, *_ = _commands()
    line = one_error_line(course_output.cli, ["--digits", "3", "3", "--output_dir", unchanged / "out"], capsys)
    assert "--digits names 3 more than once" in line
