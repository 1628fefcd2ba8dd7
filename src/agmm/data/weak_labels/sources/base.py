"""The interface every weak-label source implements, and what sources share.

A source answers, for one supervision kind of one dataset, "what weak label does this image
carry?". The dataset picks one source per kind when it is built (``choose_sources``) and asks it
for every image of that kind; no source looks at the supervision kind or a file suffix again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from agmm.runtime.constants import IGNORE_INDEX

if TYPE_CHECKING:
    from agmm.data.datasets.base import Record

T = TypeVar("T")


@dataclass(frozen=True)
class LabelSpace:
    """The classes weak labels are expressed in (the dataset's, known once it has scanned)."""

    classes: tuple[str, ...]
    has_background: bool

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def tags_of(self, label: np.ndarray | None, boxes: np.ndarray | None = None) -> np.ndarray:
        """(K,) float32 multi-hot of the classes in a label map and/or boxes."""
        tags = np.zeros(self.num_classes, dtype=np.float32)
        if label is not None:
            present = np.unique(label)
            tags[present[present < self.num_classes].astype(np.int64)] = 1.0
        if boxes is not None and len(boxes):
            tags[np.asarray(boxes)[:, 4].astype(np.int64)] = 1.0
        return tags


class WeakSource:
    """Where the weak labels of one supervision kind come from.

    ``kind``: the supervision kind served. ``location``: the folder or file the labels are read
    from (named in errors), None when they are made from the dense mask.

    ``targets(record, raw)`` returns ``{"weak_label": (H, W) uint8 (255 = unlabeled), "boxes":
    (M, 5) float32, "tags": (K,) float32}`` for one image, where ``raw`` is the dataset's
    ``read_raw`` dict (``image``, ``mask`` or None, ``instance_mask`` or None).
    ``has(record)``: whether the source has the image's label (its file, its table row);
    sources that make labels from the dense mask have every image.
    ``check(record, hw)``: read the image's label files once (``validate`` / ``skip_bad``),
    raising DataError/LabelError that names the file.
    """

    kind: str
    location: Path | None = None

    def has(self, record: Record) -> bool:
        return True

    def targets(self, record: Record, raw: dict) -> dict:
        raise NotImplementedError

    def check(self, record: Record, hw: tuple[int, int]) -> None:
        return None


def lookup(table: Mapping[str, T], record: Record) -> T | None:
    """The entry of an image in a table keyed by image name (or by its file's stem)."""
    for key in (record.name, record.image_path.stem):
        if key in table:
            return table[key]
    return None


def empty_boxes() -> np.ndarray:
    return np.zeros((0, 5), dtype=np.float32)


def unlabeled(hw: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 weak label with no labeled pixel."""
    return np.full(hw, IGNORE_INDEX, dtype=np.uint8)
