"""``full`` supervision: the dense mask is the training label."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agmm.data.weak_labels.sources.base import LabelSpace, WeakSource, empty_boxes, unlabeled

if TYPE_CHECKING:
    from agmm.data.datasets.base import Record


class DenseMaskSource(WeakSource):
    """The image's dense mask as its label; a split without masks (test images) is unlabeled."""

    kind = "full"

    def __init__(self, *, labels: LabelSpace) -> None:
        self.labels = labels

    def targets(self, record: Record, raw: dict) -> dict:
        mask = raw["mask"]
        if mask is None:
            mask = unlabeled(raw["image"].shape[:2])
        return {"weak_label": mask, "boxes": empty_boxes(), "tags": self.labels.tags_of(mask)}
