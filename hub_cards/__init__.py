"""Shipped checkpoints and embedded datasets, each a Hub-style folder with its card.

`hub_cards.path("cfg-mnistm")` gives the folder of one of them, wherever the package is installed.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """Folder of a shipped card; a clear error lists what ships when the name is unknown."""
    folder = ROOT / name
    if not folder.is_dir():
        shipped = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and (p / "README.md").exists())
        raise FileNotFoundError(f"no shipped card {name!r} under {ROOT}; available: {shipped}")
    return folder
