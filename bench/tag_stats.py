"""How much do image tags say about an image? Tags per image and the share of images per class.

    python bench/tag_stats.py --data camvid --root ../shared/data/camvid --split train

A class tagged in (almost) every image cannot be localised from tags: its CAM has nothing to
contrast. docs/BENCHMARKS.md quotes this for CamVid.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="camvid")
    parser.add_argument(
        "--root", type=Path, default=Path(os.environ.get("AGMM_CAMVID", "../shared/data/camvid"))
    )
    parser.add_argument("--split", default="train")
    args = parser.parse_args()

    from agmm.data import build_dataset

    dataset = build_dataset(args.data, root=args.root, split=args.split, supervision="tags")
    tags = np.stack([np.asarray(dataset[i]["tags"]) for i in range(len(dataset))]) > 0
    print(
        f"{args.data} {args.split}: {len(dataset)} images, {tags.sum(1).mean():.2f} of "
        f"{tags.shape[1]} classes tagged per image on average"
    )
    print("| class | images tagged (%) |\n|---|---|")
    for name, share in zip(dataset.classes, tags.mean(0)):
        print(f"| {name} | {100 * share:.1f} |")


if __name__ == "__main__":
    main()
