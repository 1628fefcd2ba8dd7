"""Image tags from a tag table: ``cls_labels.npy`` (with or without a background entry), a
``tags.json`` of ``agmm make-labels``, or a list file of lines ``name class class ...``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agmm.data.weak_labels import readers
from agmm.data.weak_labels.sources.base import (
    LabelSpace,
    WeakSource,
    empty_boxes,
    lookup,
    unlabeled,
)
from agmm.errors import DataError

if TYPE_CHECKING:
    from agmm.data.datasets.base import Record


def read_tag_table(path: Path, labels: LabelSpace) -> dict[str, np.ndarray]:
    """name -> (K,) float32 tags, the format chosen by the file's suffix (.npy, .json, else a
    list file). A ``.npy`` whose entries have K - 1 values on a dataset with a background is
    read VOC/COCO style: object classes only, background implied."""
    suffix = path.suffix.lower()
    num_classes = labels.num_classes
    if suffix == ".npy":
        offset = 0
        if labels.has_background:
            data = np.load(path, allow_pickle=True)
            data = data.item() if data.dtype == object else data
            first = next(iter(data.values()), None) if isinstance(data, Mapping) else None
            if first is not None and np.asarray(first).size == num_classes - 1:
                offset = 1
        return readers.read_tags_npy(
            path,
            num_classes=num_classes,
            class_offset=offset,
            background_index=0 if offset else None,
        )
    if suffix == ".json":
        return readers.read_tags_json(path, num_classes=num_classes)
    return readers.read_tags_list(path, num_classes=num_classes, class_names=labels.classes)


class TagTableSource(WeakSource):
    """``tags`` supervision from a tag file: the image's row, an empty weak label, no boxes."""

    kind = "tags"

    def __init__(self, *, path: Path, table: Mapping[str, np.ndarray]) -> None:
        self.location = path
        self.table = table

    def has(self, record: Record) -> bool:
        return lookup(self.table, record) is not None

    def targets(self, record: Record, raw: dict) -> dict:
        tags = lookup(self.table, record)
        if tags is None or not np.asarray(tags).any():
            raise DataError(f"{self.location}: image {record.image_path.name} has no tags")
        return {
            "weak_label": unlabeled(raw["image"].shape[:2]),
            "boxes": empty_boxes(),
            "tags": np.asarray(tags, dtype=np.float32),
        }
