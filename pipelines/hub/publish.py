"""Push a shipped model folder or a training output to the Hugging Face Hub.

    python -m pipelines.hub dann-mnistm-usps --repo_id me/dann-mnistm-usps --dry_run      # a shipped folder
    python -m pipelines.hub runs/cfg --repo_id me/cfg-mnistm --private

Refused, before anything is sent: a folder without a model card (README.md with metadata); a folder holding a
pickle, judged by the file's bytes whatever its name (`pipelines.hub.pickle_sniffer`: `.pth.tar`, `.joblib`,
`.pkl.gz`, zip-pickles, object arrays) or by a pickle's name (`.pt`, `.bin`, ...): only safetensors go up, and a
pickle may only hold one plain tensor, such as the course's noise/*.pt inputs, checked by loading it with
weights_only=True; a symbolic link that leads out of the folder (it would upload a file from elsewhere); and a
folder whose code copies differ from this package's source (`python -m pipelines.hub.remote_code` refreshes
them). Hidden files (the project's bookkeeping: `.written-by-guided-diffusion-da`, `.training_run.json`) and
training checkpoints (checkpoint-*/, checkpoints/: optimizer state, not the model) stay local.
`--dry_run` lists exactly the files that would go up and needs no network. The local folder is never changed.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import validate_repo_id

from pipelines.command_line import resolve_pretrained, run_command
from pipelines.hub.pickle_sniffer import pickle_inside
from pipelines.hub.remote_code import stale_code

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")


def _stays_local(relative: Path) -> bool:
    parts = relative.parts
    return any(part.startswith(".") or part == "__pycache__" for part in parts) or any(
        part == "checkpoints" or part.startswith("checkpoint-") for part in parts[:-1]
    )


def files_to_upload(folder: str | Path) -> list[str]:
    """Paths (relative, POSIX, sorted) of the files that go up; raises ValueError naming what is refused."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    readme = folder / "README.md"
    if not readme.is_file():
        raise ValueError(f"{folder} has no README.md: write its model card first")
    card = ModelCard.load(readme)
    if not card.data.to_dict():
        raise ValueError(f"{readme} has no metadata block (---\\nlibrary_name: ...\\n---): not a model card")
    files = _files_inside(folder)
    pickled = [
        f"{path}: {why}" for path in files if (why := _pickled(folder / path)) and not _is_one_tensor(folder / path)
    ]
    if pickled:
        raise ValueError(
            f"{folder} holds pickled weights or data ({'; '.join(pickled[:5])}): a pickle runs code when loaded; "
            "save them as safetensors"
        )
    stale = stale_code(folder)
    if stale:
        raise ValueError(
            f"{folder}: code copies differ from the package ({', '.join(stale)}); "
            f"run python -m pipelines.hub.remote_code {folder}"
        )
    return [path.as_posix() for path in files]


def _files_inside(folder: Path) -> list[Path]:
    """The regular files that go up (relative, sorted); a symbolic link that leaves `folder`, and an entry that is
    no file or folder (a FIFO, a link to nothing), are refused rather than skipped."""
    inside = folder.resolve()
    files, leaving, irregular = [], [], []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if _stays_local(relative):
            continue
        if path.is_symlink() and inside not in path.resolve().parents:
            leaving.append(f"{relative} -> {path.resolve()}")
        elif path.is_file():
            files.append(relative)
        elif not path.is_dir():
            irregular.append(str(relative))
    if leaving:
        raise ValueError(
            f"{folder} holds links to files outside it ({', '.join(leaving[:5])}): copy what should go up into the "
            "folder, or remove the links"
        )
    if irregular:
        raise ValueError(f"{folder} holds entries that are not regular files ({', '.join(irregular[:5])})")
    return sorted(files)


def _pickled(path: Path) -> str | None:
    """Why the file counts as a pickle (its bytes, or its name), or None."""
    found = pickle_inside(path)
    if found:
        return found
    suffixes = [suffix.lower() for suffix in path.suffixes]
    return "named like a pickle" if any(suffix in PICKLE_SUFFIXES for suffix in suffixes) else None


def _is_one_tensor(path: Path) -> bool:
    """A pickle file that is data (one tensor, e.g. a DDIM start noise), not weights or arbitrary objects."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it reads; the verdict is all we need
            warnings.simplefilter("ignore")
            return isinstance(torch.load(path, map_location="cpu", weights_only=True), torch.Tensor)
    except Exception:  # noqa: BLE001 - anything weights_only cannot read is an unsafe pickle: refused
        return False


def push(folder: Path, files: list[str], repo_id: str, private: bool, commit_message: str) -> str:
    """Create the repository if needed and upload exactly `files` in one commit; returns the commit URL."""
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files]
        commit = api.create_commit(repo_id, operations=operations, commit_message=commit_message)
    except Exception as error:
        if isinstance(error, HfHubHTTPError):  # the Hub answered: no token, no rights, bad name, ...
            raise ConnectionError(f"the Hub refused the push to {repo_id}: {_first_line(error)}") from error
        # offline mode, DNS, refused connection: OSError or the HTTP client's own error family
        if isinstance(error, OSError) or any(cls.__name__ == "HTTPError" for cls in type(error).__mro__):
            raise ConnectionError(
                f"cannot reach the Hub to push {folder} to {repo_id}: {_first_line(error)}; nothing was uploaded"
            ) from error
        raise
    return commit.commit_url


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a training output folder, or a shipped folder's name (dann-mnistm-usps)")
    parser.add_argument("--repo_id", required=True, help="the Hub repository, owner/name")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--dry_run", action="store_true", help="list the files that would go up; send nothing")
    parser.add_argument("--commit_message", default=None, help="default: 'Upload <folder name>'")
    return parser.parse_args(argv)


def main(args) -> list[str]:
    validate_repo_id(args.repo_id)  # a ValueError naming the problem
    args.folder = Path(resolve_pretrained(args.folder, "folder", hub=False))
    files = files_to_upload(args.folder)
    if args.dry_run:
        for name in files:
            print(name)
        size = sum((args.folder / name).stat().st_size for name in files)
        visibility = "private" if args.private else "public"
        print(f"dry run: {len(files)} files, {size / 2**20:.1f} MiB would go to {visibility} {args.repo_id}")
        return files
    url = push(args.folder, files, args.repo_id, args.private, args.commit_message or f"Upload {args.folder.name}")
    print(f"pushed {len(files)} files: {url}")
    return files


def cli(argv=None) -> None:
    run_command(main, parse_args, argv)


if __name__ == "__main__":
    cli()
