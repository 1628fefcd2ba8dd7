"""``boxes`` supervision from the boxes a dataset ships (VOC ``Annotations/*.xml``, COCO json)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from agmm.data.weak_labels.sources.base import LabelSpace, WeakSource, unlabeled

if TYPE_CHECKING:
    from agmm.data.datasets.base import Record

#: record -> (M, 5) float32 boxes of the image, or None when the dataset has none for it.
NativeBoxes = Callable[["Record"], "np.ndarray | None"]


class NativeBoxSource(WeakSource):
    """The dataset's own boxes, an empty weak label (seeds come from ``agmm.seeds``) and the
    boxes' classes as tags (plus background when the image has a mask); an image without
    shipped boxes falls back to ``fallback`` (boxes simulated from its mask)."""

    kind = "boxes"

    def __init__(self, *, native_boxes: NativeBoxes, fallback: WeakSource, labels: LabelSpace):
        self.native_boxes = native_boxes
        self.fallback = fallback
        self.labels = labels

    def targets(self, record: Record, raw: dict) -> dict:
        boxes = self.native_boxes(record)
        if boxes is None:
            return self.fallback.targets(record, raw)
        tags = self.labels.tags_of(None, boxes)
        if raw["mask"] is not None and self.labels.has_background:
            tags[0] = 1.0
        return {"weak_label": unlabeled(raw["image"].shape[:2]), "boxes": boxes, "tags": tags}
