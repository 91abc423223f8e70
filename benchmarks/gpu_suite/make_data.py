"""Build the data folder that the GPU suite carries to a GPU machine, small enough to travel.

    python -m benchmarks.gpu_suite.make_data --source ../shared/data --output_dir gpu-data      # about 18 MB
    python -m benchmarks.gpu_suite.make_data --output_dir gpu-data --mnistm_train 30000 --max_mb 60
    python -m benchmarks.gpu_suite.make_data --datasets mnist5k mnistm --mnistm_train 8000 \
        --mnistm_validation 9001 --image_format webp --max_mb 23 --output_dir gpu-data-mnist  # gpu_dann_seeds

Writes a folder laid out like ../shared/data (one HF parquet folder per dataset, split by file name):
  mnistm/     the first --mnistm_train training and --mnistm_validation validation images, resized once
              to 28x28 with PIL bilinear, exactly as adapters.decode_digits resizes them (which then leaves
              them untouched), so training sees the same pixels as from the full folder. 28x28 PNGs take
              about 1.6 KB an image against 2.0 KB at 32x32.
  usps/       all of it (1.7 MB) unless --usps_train / --usps_validation say otherwise
  lfw_faces/  the 100 faces, copied
  mnist5k/    the 5,000 MNIST digits, copied (only when --datasets names it)
--image_format webp stores the same pixels as lossless WebP (adapters.digit_sources.IMAGE_FORMATS): about 1.2 KB
a 28x28 MNIST-M image against 1.6 KB as PNG (measured on 1,000 validation images). PIL decodes either, so nothing
else changes; the tests check the pixels. With webp the default subset is 13.5 MB instead of 17.7. The device
tool carries at most 64 MiB in all; this repository's tracked files take about 42 MB of that, the wheels 1-7 MB.
Fails if the folder exceeds --max_mb.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from adapters.digit_sources import IMAGE_FORMATS, from_arrays
from adapters.digits import _to_rgb_array, open_image

DEFAULT_SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data beside the checkout
DATASETS = ("mnistm", "usps", "lfw_faces", "mnist5k")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="a folder laid out like ../shared/data")
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--mnistm_train", type=int, default=9000)
    parser.add_argument("--mnistm_validation", type=int, default=1000)
    parser.add_argument("--usps_train", type=int, default=None, help="default: all")
    parser.add_argument("--usps_validation", type=int, default=None, help="default: all")
    parser.add_argument("--max_mb", type=float, default=20.0, help="fail if the folder is larger (MB = 10^6 bytes)")
    parser.add_argument("--datasets", nargs="+", default=["mnistm", "usps", "lfw_faces"], choices=DATASETS)
    parser.add_argument(
        "--image_format",
        default="png",
        choices=sorted(IMAGE_FORMATS),
        help="how the digits are stored; both are lossless",
    )
    return parser.parse_args(argv)


def first_rows(path: Path, count: int | None) -> tuple[list, np.ndarray]:
    """The first `count` rows (all when None) of a parquet file of the shared layout: image values, labels."""
    table = pq.read_table(path)
    if count is not None:
        if count > table.num_rows:
            raise ValueError(f"{path} holds {table.num_rows} rows, fewer than the {count} asked for")
        table = table.slice(0, count)
    return table.column("image").to_pylist(), np.asarray(table.column("label").to_pylist())


def write_digits(
    source: Path, target: Path, split: str, count: int | None, resize_to: int | None, image_format: str = "png"
) -> int:
    values, labels = first_rows(source / f"{split}.parquet", count)
    images = [open_image(value, i) for i, value in enumerate(values)]
    if resize_to is not None:
        arrays = np.stack([_to_rgb_array(image, resize_to) for image in images])
    else:
        arrays = np.stack([np.asarray(image) for image in images])
    target.mkdir(parents=True, exist_ok=True)
    dataset = from_arrays(arrays, labels.tolist(), f"{source.name} [{split}]", image_format)
    dataset.to_parquet(str(target / f"{split}.parquet"))
    return len(labels)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(args) -> dict:
    for name in args.datasets:
        if not (args.source / name).is_dir():
            raise FileNotFoundError(f"{args.source / name} does not exist: lay --source out like ../shared/data")
    out = args.output_dir
    counts = {}
    if "mnistm" in args.datasets:
        for split, count in (("train", args.mnistm_train), ("validation", args.mnistm_validation)):
            counts[f"mnistm/{split}"] = write_digits(
                args.source / "mnistm", out / "mnistm", split, count, 28, args.image_format
            )
    if "usps" in args.datasets:
        for split, count in (("train", args.usps_train), ("validation", args.usps_validation)):
            counts[f"usps/{split}"] = write_digits(
                args.source / "usps", out / "usps", split, count, None, args.image_format
            )
    for name in ("lfw_faces", "mnist5k"):
        if name in args.datasets:
            shutil.copytree(args.source / name, out / name, dirs_exist_ok=True)
    size = folder_bytes(out)
    summary = {"counts": counts, "megabytes": size / 1e6}
    print(f"{out}: {size / 1e6:.1f} MB; " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if size / 1e6 > args.max_mb:
        raise ValueError(f"{out} is {size / 1e6:.1f} MB, over --max_mb {args.max_mb}: take fewer images")
    return summary


if __name__ == "__main__":
    main(parse_args())
