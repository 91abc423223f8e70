"""Rebuild the small class-balanced subsets under hub_cards/ from full local copies.

    python -m hub_cards.make_embedded_subsets --mnistm ../shared/data/mnistm --usps ../shared/data/usps

The subsets take the first N images of each digit in file order, so they are reproducible and
their validation images are a subset of the source's validation split (never of train).
"""

import argparse
from pathlib import Path

import datasets

from adapters import load_digits

HERE = Path(__file__).resolve().parent
PER_CLASS = {"mnistm": {"train": 200, "validation": 50}, "usps": {"train": 100, "validation": 30}}


def balanced_subset(dataset: datasets.Dataset, per_class: int) -> datasets.Dataset:
    taken = {digit: [] for digit in range(10)}
    for index, label in enumerate(dataset["label"]):
        if len(taken[label]) < per_class:
            taken[label].append(index)
    short = {d: len(v) for d, v in taken.items() if len(v) < per_class}
    if short:
        raise ValueError(f"not enough images for a balanced subset of {per_class} per digit: {short}")
    return dataset.select(sorted(i for indices in taken.values() for i in indices))


def write_subset(name: str, source: str) -> None:
    folder = HERE / f"{name}-mini" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for split, per_class in PER_CLASS[name].items():
        subset = balanced_subset(load_digits(name, source=source, split=split), per_class)
        subset.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
        print(f"{name}-mini/{split}: {len(subset)} images")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnistm", required=True, help="full MNIST-M (HF folder with train/validation)")
    parser.add_argument("--usps", required=True, help="full USPS (HF folder with train/validation)")
    args = parser.parse_args()
    write_subset("mnistm", args.mnistm)
    write_subset("usps", args.usps)


if __name__ == "__main__":
    main()
