"""Weak labels from files in a folder, one set per image, named after it (sub-folders searched):

- ``<name>.png``: the label map, read with the dataset's unlabeled convention (``png_options``);
- ``<name>.json``: a sidecar ``{"boxes": [[x0, y0, x1, y1, c], ...], "tags": [c, ...]}``;
- ``<name>.xml``: VOC boxes;
- ``tags.json`` of the folder (``tags`` or mixed supervision): tags of every image.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agmm.data.weak_labels.readers import LABEL_PNG_CONVENTIONS, read_label_png, read_voc_xml
from agmm.data.weak_labels.sources.base import (
    LabelSpace,
    WeakSource,
    empty_boxes,
    lookup,
    unlabeled,
)
from agmm.errors import DataError, LabelError

if TYPE_CHECKING:
    from agmm.data.datasets.base import Record

#: {image stem: {".png": path, ".json": path, ".xml": path}}
FileIndex = dict[str, dict[str, Path]]


def index_files(folder: Path) -> FileIndex:
    """{stem: {suffix: path}} of the label files (.png, .json, .xml) under a folder (recursive)."""
    if folder.is_file():
        return {}
    index: FileIndex = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in (".png", ".json", ".xml") and path.is_file():
            index.setdefault(path.stem, {}).setdefault(path.suffix.lower(), path)
    return index


def png_options(
    *,
    labels: LabelSpace,
    dataset: str,
    default_unlabeled: Iterable[int],
    unlabeled_values: Iterable[int] | None = None,
    reduce_zero_label: bool = False,
    label_format: str | None = None,
) -> dict:
    """``read_label_png`` keyword arguments (unlabeled_values, reduce_zero_label, id_map): the
    dataset's defaults, then the named ``label_format``, then the explicit arguments."""
    options = {"unlabeled_values": default_unlabeled, "reduce_zero_label": False, "id_map": None}
    if label_format is not None:
        if label_format not in LABEL_PNG_CONVENTIONS:
            raise DataError(
                f"unknown weak_label_format {label_format!r}; valid: "
                f"{', '.join(LABEL_PNG_CONVENTIONS)}"
            )
        convention = dict(LABEL_PNG_CONVENTIONS[label_format])
        expected = convention.pop("num_classes")
        if expected != labels.num_classes:
            raise DataError(
                f"weak_label_format {label_format!r} is for {expected} classes but "
                f"{dataset} has {labels.num_classes}"
            )
        options.update(convention)
    if unlabeled_values is not None:
        options["unlabeled_values"] = unlabeled_values
    if reduce_zero_label:
        options["reduce_zero_label"] = True
    options["unlabeled_values"] = tuple(int(v) for v in options["unlabeled_values"])
    return options


def read_weak_png(path: Path, hw: tuple[int, int], num_classes: int, options: dict) -> np.ndarray:
    """(H, W) uint8 weak label from a PNG with ``png_options``; LabelError when its size is not
    its image's."""
    label = read_label_png(path, num_classes=num_classes, **options)
    if tuple(label.shape[:2]) != tuple(hw):
        raise LabelError(
            f"{path}: weak label size {label.shape[1]}x{label.shape[0]} (WxH) differs from "
            f"its image's {hw[1]}x{hw[0]}"
        )
    return label


def read_sidecar(path: Path, num_classes: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Boxes (M, 5) and tags (K,) from a JSON sidecar {"boxes": [[x0, y0, x1, y1, c], ...], "tags": [ids]}."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: cannot read weak-label JSON ({error})") from error
    boxes = tags = None
    if "boxes" in data:
        boxes = np.asarray(data["boxes"], dtype=np.float32).reshape(-1, 5)
        bad = (boxes[:, 4] < 0) | (boxes[:, 4] >= num_classes)
        if bad.any():
            raise LabelError(
                f"{path}: box class ids {np.unique(boxes[bad, 4]).astype(int).tolist()} are outside"
                f" 0..{num_classes - 1}"
            )
    if "tags" in data:
        ids = np.asarray(data["tags"], dtype=np.int64).reshape(-1)
        if ((ids < 0) | (ids >= num_classes)).any():
            raise LabelError(f"{path}: tag ids {ids.tolist()} are outside 0..{num_classes - 1}")
        tags = np.zeros(num_classes, dtype=np.float32)
        tags[ids] = 1.0
    return boxes, tags


class FileSource(WeakSource):
    """One kind's weak labels from a folder's files (see the module docstring).

    ``boxes`` take the sidecar's or the XML's boxes, else the dataset's own (``native_boxes``),
    and may be box-seed PNGs alone; ``boxes`` and ``tags`` without a PNG have an empty weak
    label. Tags come from the sidecar, else the folder's tag table, else the weak label's
    classes (and the boxes', plus background for ``boxes``).
    """

    def __init__(
        self,
        *,
        kind: str,
        folder: Path,
        files: FileIndex,
        labels: LabelSpace,
        png: dict,
        tag_table: Mapping[str, np.ndarray] | None = None,
        native_boxes: Callable[[Record], np.ndarray | None] | None = None,
    ) -> None:
        self.kind = kind
        self.location = folder
        self.files = files
        self.labels = labels
        self.png = png
        self.tag_table = tag_table or {}
        self.native_boxes = native_boxes

    def files_of(self, record: Record) -> dict[str, Path]:
        """The image's label files: {'.png': path, '.json': path, '.xml': path} (any subset)."""
        return lookup(self.files, record) or {}

    def has(self, record: Record) -> bool:
        return bool(self.files_of(record)) or (
            self.kind == "tags" and lookup(self.tag_table, record) is not None
        )

    def check(self, record: Record, hw: tuple[int, int]) -> None:
        files = self.files_of(record)
        if ".png" in files:
            read_weak_png(files[".png"], hw, self.labels.num_classes, self.png)

    def targets(self, record: Record, raw: dict) -> dict:
        kind, folder, name = self.kind, self.location, record.name
        hw = raw["image"].shape[:2]
        files = self.files_of(record)
        weak = None
        if ".png" in files:
            weak = read_weak_png(files[".png"], hw, self.labels.num_classes, self.png)
        boxes, tags = None, lookup(self.tag_table, record)
        if ".json" in files:
            json_boxes, json_tags = read_sidecar(files[".json"], self.labels.num_classes)
            boxes = json_boxes
            tags = json_tags if json_tags is not None else tags
        if boxes is None and ".xml" in files:
            boxes = np.asarray(
                read_voc_xml(files[".xml"], self.labels.classes), dtype=np.float32
            ).reshape(-1, 5)
        if kind == "boxes" and boxes is None and self.native_boxes is not None:
            boxes = self.native_boxes(record)  # seed PNGs beside the dataset's own boxes
        if kind == "boxes" and boxes is None and weak is None:
            raise DataError(
                f"{folder}: no boxes for image {record.image_path.name} (expected {name}.json "
                f"with a 'boxes' list, {name}.xml in VOC format, or a {name}.png of box seeds)"
            )
        if weak is None:
            if kind not in ("boxes", "tags"):
                raise DataError(f"{folder}: no {kind} label PNG for image {record.image_path.name}")
            weak = unlabeled(hw)
        if tags is None:
            tags = self.labels.tags_of(weak, boxes)
            if kind == "boxes" and self.labels.has_background:
                tags[0] = 1.0
        if kind == "tags" and not tags.any():
            raise DataError(f"{folder}: image {record.image_path.name} has no tags")
        return {
            "weak_label": weak,
            "boxes": empty_boxes() if boxes is None else boxes,
            "tags": np.asarray(tags, dtype=np.float32),
        }


class FileOrMaskSource(WeakSource):
    """``full`` supervision with a folder: the image's PNG there (e.g. pseudo labels of a
    previous stage), else its dense mask (``mask``)."""

    kind = "full"

    def __init__(self, *, files: FileSource, mask: WeakSource) -> None:
        self.files = files
        self.mask = mask
        self.location = files.location

    def check(self, record: Record, hw: tuple[int, int]) -> None:
        self.files.check(record, hw)

    def targets(self, record: Record, raw: dict) -> dict:
        if ".png" in self.files.files_of(record):
            return self.files.targets(record, raw)
        return self.mask.targets(record, raw)
