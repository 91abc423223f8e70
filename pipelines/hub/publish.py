"""Push a shipped model folder or a training output to the Hugging Face Hub.

    python -m pipelines.hub dann-mnistm-usps --repo_id me/dann-mnistm-usps --dry_run      # a shipped folder
    python -m pipelines.hub runs/cfg --repo_id me/cfg-mnistm --private

Refused, before anything is sent: a folder without a model card (README.md with metadata), a folder holding
pickled weights (only safetensors go up; a pickle file may only hold one plain tensor, such as the course's
noise/*.pt inputs, checked by loading it with weights_only=True), and a folder whose code copies differ from
this package's source (`python -m pipelines.hub.remote_code` refreshes them). Hidden files and training
checkpoints (checkpoint-*/, checkpoints/: optimizer state, not the model) stay local.
`--dry_run` lists exactly the files that would go up and needs no network. The local folder is never changed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import validate_repo_id

from pipelines.command_line import resolve_pretrained, run_command
from pipelines.hub.remote_code import stale_code

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


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
    files = sorted(
        path.relative_to(folder)
        for path in folder.rglob("*")
        if path.is_file() and not _stays_local(path.relative_to(folder))
    )
    pickled = [
        str(path) for path in files if path.suffix.lower() in PICKLE_SUFFIXES and not _is_one_tensor(folder / path)
    ]
    if pickled:
        raise ValueError(f"{folder} holds pickled weights ({', '.join(pickled[:5])}): save them as safetensors")
    stale = stale_code(folder)
    if stale:
        raise ValueError(
            f"{folder}: code copies differ from the package ({', '.join(stale)}); "
            f"run python -m pipelines.hub.remote_code {folder}"
        )
    return [path.as_posix() for path in files]


def _is_one_tensor(path: Path) -> bool:
    """A pickle file that is data (one tensor, e.g. a DDIM start noise), not weights or arbitrary objects."""
    try:
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
