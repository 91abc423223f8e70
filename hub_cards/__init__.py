"""Shipped checkpoints and embedded datasets, each a Hub-style folder with its card.

`hub_cards.path("cfg-mnistm")` gives the folder of one of them, wherever the package is installed (a checkout,
an editable install or a wheel); `hub_cards.names()` lists them. It is the one lookup of a shipped folder: the
commands resolve `--pretrained` values through `pipelines.command_line.resolve_pretrained`, which is built on it.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def names() -> list[str]:
    """The shipped folders, sorted: the folders here that carry a card (README.md)."""
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and (p / "README.md").is_file())


def path(name: str) -> Path:
    """Folder of the shipped card `name`; a clear error lists what ships when the name is unknown."""
    shipped = names()
    if name not in shipped:
        raise FileNotFoundError(f"no shipped folder {name!r}; shipped: {', '.join(shipped)}")
    return ROOT / name
