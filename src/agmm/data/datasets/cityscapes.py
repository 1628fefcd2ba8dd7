"""Cityscapes (Cordts et al. 2016), the 19 evaluation classes (trainIds), 255 = ignore.

Layout (``root``)::

    leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (preferred)
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png        (mapped to trainIds)
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png     (optional, for boxes)

``label_type``: ``auto`` (labelTrainIds if present, else labelIds), ``trainIds`` or ``labelIds``.
The image name is ``<city>_<seq>_<frame>``.
"""

from __future__ import annotations

import numpy as np

from agmm.data import io
from agmm.data.datasets.base import Record, SegmentationDataset
from agmm.errors import DataError
from agmm.runtime.constants import CITYSCAPES_LABELID_TO_TRAINID

CITYSCAPES_CLASSES = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
]
CITYSCAPES_PALETTE = np.array(
    [
        [128, 64, 128],
        [244, 35, 232],
        [70, 70, 70],
        [102, 102, 156],
        [190, 153, 153],
        [153, 153, 153],
        [250, 170, 30],
        [220, 220, 0],
        [107, 142, 35],
        [152, 251, 152],
        [70, 130, 180],
        [220, 20, 60],
        [255, 0, 0],
        [0, 0, 142],
        [0, 0, 70],
        [0, 60, 100],
        [0, 80, 100],
        [0, 0, 230],
        [119, 11, 32],
    ],
    dtype=np.uint8,
)


def label_id_table() -> np.ndarray:
    """(34,) lookup table labelId -> trainId (255 for ids not evaluated)."""
    return np.array([CITYSCAPES_LABELID_TO_TRAINID[i] for i in range(34)], dtype=np.int64)


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations (train 2975, val 500; test has no labels)."""

    classes = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE
    has_background = False

    def __init__(self, *, label_type: str = "auto", **kwargs) -> None:
        if label_type not in ("auto", "trainIds", "labelIds"):
            raise DataError(f"label_type must be auto, trainIds or labelIds, not {label_type!r}")
        self.label_type = label_type
        super().__init__(**kwargs)

    def _scan(self) -> list[Record]:
        if self.root is None or not self.root.is_dir():
            raise DataError(f"{self.root}: Cityscapes folder does not exist")
        image_dir = self.root / "leftImg8bit" / self.split
        label_dir = self.root / "gtFine" / self.split
        self._require_image_dir(image_dir, "Cityscapes")
        suffix = "_leftImg8bit"
        paths = sorted(image_dir.glob(f"*/*{suffix}.png"))
        label_type = self.label_type
        if label_type == "auto":
            has_train_ids = any(label_dir.glob("*/*_gtFine_labelTrainIds.png"))
            label_type = "trainIds" if has_train_ids else "labelIds"
        self.resolved_label_type = label_type
        if label_type == "labelIds":
            self.mask_id_map = label_id_table()
        has_labels = label_dir.is_dir() and self.split != "test"
        label_suffix = (
            "_gtFine_labelTrainIds.png" if label_type == "trainIds" else "_gtFine_labelIds.png"
        )
        records = []
        for path in paths:
            name = path.name[: -len(f"{suffix}.png")]
            city = path.parent.name
            mask_path = label_dir / city / f"{name}{label_suffix}" if has_labels else None
            records.append(
                Record(name=name, image_path=path, mask_path=mask_path, extra={"city": city})
            )
        return records

    def _read_instances(self, record: Record, mask: np.ndarray | None) -> np.ndarray | None:
        path = (
            self.root
            / "gtFine"
            / self.split
            / record.extra["city"]
            / f"{record.name}_gtFine_instanceIds.png"
        )
        if not path.is_file():
            return None
        instance_ids = io.read_label_array(path)
        # Thing instances are labelId * 1000 + k; stuff pixels (< 1000) have no instance.
        return np.where(instance_ids >= 1000, instance_ids, 0)
