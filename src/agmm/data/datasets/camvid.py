"""CamVid, 11 classes of the SegNet split (Brostow et al. 2009; Badrinarayanan et al. 2017).

Two layouts are read:

* ``images/<split>/*.jpg|png`` + ``labels/<split>/*.png`` (matched by file stem);
* the SegNet layout ``<split>/*.png`` + ``<split>annot/*.png``, optionally listed by
  ``<split>.txt`` lines ``/SegNet/CamVid/train/x.png /SegNet/CamVid/trainannot/x.png``.

Labels are grey PNGs with class ids 0..10; 255 (and 11, the SegNet "void" id) = ignore.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agmm.data import io
from agmm.data.datasets.base import Record, SegmentationDataset, records_with_masks
from agmm.errors import DataError

CAMVID_CLASSES = [
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
]
# SegNet tutorial colours.
CAMVID_PALETTE = np.array(
    [
        [128, 128, 128],
        [128, 0, 0],
        [192, 192, 128],
        [128, 64, 128],
        [60, 40, 222],
        [128, 128, 0],
        [192, 128, 128],
        [64, 64, 128],
        [64, 0, 128],
        [64, 64, 0],
        [0, 128, 192],
    ],
    dtype=np.uint8,
)


class CamVid(SegmentationDataset):
    """CamVid (SegNet split: train 367, val 101, test 233 images of 480x360)."""

    classes = CAMVID_CLASSES
    palette = CAMVID_PALETTE
    has_background = False
    weak_unlabeled_values = (255, 11)
    mask_unlabeled_values = (255, 11)

    def _scan(self) -> list[Record]:
        root = self.root
        if root is None or not root.is_dir():
            raise DataError(f"{root}: CamVid folder does not exist")
        if (root / "images").is_dir():
            return self._scan_images_labels(root)
        if (root / self.split).is_dir() or (root / f"{self.split}.txt").is_file():
            return self._scan_segnet(root)
        raise DataError(
            f"{root}: no CamVid split {self.split!r}: expected images/{self.split}/ (+ labels/"
            f"{self.split}/) or the SegNet layout {self.split}/ + {self.split}annot/"
        )

    def _scan_images_labels(self, root: Path) -> list[Record]:
        image_dir, label_dir = root / "images" / self.split, root / "labels" / self.split
        self._require_image_dir(image_dir, "CamVid")
        return records_with_masks(io.list_images(image_dir), label_dir)

    def _scan_segnet(self, root: Path) -> list[Record]:
        image_dir, label_dir = root / self.split, root / f"{self.split}annot"
        list_file = root / f"{self.split}.txt"
        has_labels = label_dir.is_dir()
        if list_file.is_file():
            records = []
            for line in list_file.read_text().splitlines():
                parts = line.split()
                if not parts:
                    continue
                image_path = image_dir / Path(parts[0]).name
                mask_path = label_dir / Path(parts[1]).name if len(parts) > 1 else None
                if mask_path is None and has_labels:
                    mask_path = label_dir / f"{image_path.stem}.png"
                records.append(
                    Record(name=image_path.stem, image_path=image_path, mask_path=mask_path)
                )
            return records
        return records_with_masks(io.list_images(image_dir), label_dir)
