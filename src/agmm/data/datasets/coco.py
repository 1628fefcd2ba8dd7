"""MS COCO (Lin et al. 2014) as semantic segmentation: 80 thing classes + background (id 0).

Layout (``root``)::

    annotations/instances_<split>.json     e.g. instances_train2017.json
    <split>/<file_name>                    e.g. train2017/000000000009.jpg (or images/<split>/)

``split`` is ``train``/``val`` (meaning ``train2017``/``val2017``) or the exact folder name
(``train2014``). Masks are drawn from the polygons / RLE with pycocotools, larger objects
first so small ones stay visible; crowd regions are ignore (255). Category ids (1..90 with
gaps) map to contiguous ids 1..80 in category-id order. Boxes come from the json.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from agmm.data.datasets.base import Record, SegmentationDataset
from agmm.data.palette import voc_palette
from agmm.data.weak_labels.readers import read_coco_boxes
from agmm.errors import DataError, LabelError
from agmm.runtime.constants import IGNORE_INDEX


class COCO(SegmentationDataset):
    """COCO instances json -> 81-class semantic masks (background + 80 things)."""

    has_background = True
    has_native_boxes = True

    def __init__(self, **kwargs) -> None:
        self.classes = ["background"]  # filled from the json in _scan
        super().__init__(**kwargs)

    def _scan(self) -> list[Record]:
        from pycocotools.coco import COCO as CocoApi

        root = self.root
        if root is None or not root.is_dir():
            raise DataError(f"{root}: COCO folder does not exist")
        split = self.split
        candidates = [split, f"{split}2017", f"{split}2014"]
        json_path = next(
            (
                root / "annotations" / f"instances_{c}.json"
                for c in candidates
                if (root / "annotations" / f"instances_{c}.json").is_file()
            ),
            None,
        )
        if json_path is None:
            raise DataError(
                f"{root / 'annotations' / f'instances_{split}2017.json'}: COCO annotation file for "
                f"split {split!r} does not exist"
            )
        folder_name = json_path.stem[len("instances_") :]
        image_dir = next(
            (d for d in (root / folder_name, root / "images" / folder_name) if d.is_dir()),
            root / folder_name,
        )
        try:
            with open(json_path) as handle:
                dataset = json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            raise DataError(f"{json_path}: cannot read COCO json ({error})") from error
        api = CocoApi()
        api.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            api.createIndex()
        self.coco, self.json_path = api, json_path
        categories = sorted(dataset.get("categories", []), key=lambda c: c["id"])
        if not categories:
            raise DataError(f"{json_path}: has no categories")
        self.classes = ["background"] + [c["name"] for c in categories]
        self.category_to_class = {c["id"]: i + 1 for i, c in enumerate(categories)}
        self.palette = voc_palette(len(self.classes))
        records = []
        for image_id in sorted(api.imgs):
            info = api.imgs[image_id]
            path = image_dir / info["file_name"]
            records.append(
                Record(
                    name=Path(info["file_name"]).stem,
                    image_path=path,
                    mask_path=None,
                    extra={"image_id": image_id, "height": info["height"], "width": info["width"]},
                )
            )
        return records

    def _annotations(self, record: Record) -> list[dict]:
        annotations = self.coco.imgToAnns.get(record.extra["image_id"], [])
        for annotation in annotations:
            if annotation["category_id"] not in self.category_to_class:
                raise LabelError(
                    f"{self.json_path}: annotation {annotation.get('id')} of image "
                    f"{record.image_path.name} has category id {annotation['category_id']} "
                    "that is not in the categories list"
                )
        return sorted(annotations, key=lambda a: -a.get("area", 0))

    def read_mask(self, record: Record, image_hw: tuple[int, int] | None) -> np.ndarray:
        """(H, W) uint8 mask drawn from the record's polygons/RLE; crowd = 255."""
        height, width = record.extra["height"], record.extra["width"]
        if image_hw is not None and tuple(image_hw) != (height, width):
            raise LabelError(
                f"{record.image_path}: image is {image_hw[1]}x{image_hw[0]} (WxH) but "
                f"{self.json_path.name} says {width}x{height}"
            )
        mask = np.zeros((height, width), dtype=np.uint8)
        for annotation in self._annotations(record):
            pixels = self._ann_to_mask(annotation, height, width, record).astype(bool)
            if annotation.get("iscrowd", 0):
                mask[pixels] = IGNORE_INDEX
            else:
                mask[pixels] = self.category_to_class[annotation["category_id"]]
        return mask

    def _ann_to_mask(self, annotation: dict, height: int, width: int, record: Record) -> np.ndarray:
        from pycocotools import mask as mask_utils

        segmentation = annotation.get("segmentation")
        try:
            if isinstance(segmentation, list):
                if not segmentation:
                    return np.zeros((height, width), dtype=np.uint8)
                rles = mask_utils.frPyObjects(segmentation, height, width)
                rle = mask_utils.merge(rles)
            elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
                rle = mask_utils.frPyObjects(segmentation, height, width)
            else:
                rle = segmentation
            return mask_utils.decode(rle)
        except (TypeError, ValueError, KeyError) as error:
            raise LabelError(
                f"{self.json_path}: annotation {annotation.get('id')} of image "
                f"{record.image_path.name} has an unreadable segmentation ({error})"
            ) from error

    def _read_instances(self, record: Record, mask: np.ndarray | None) -> np.ndarray:
        height, width = record.extra["height"], record.extra["width"]
        instances = np.zeros((height, width), dtype=np.int32)
        for number, annotation in enumerate(self._annotations(record), 1):
            if not annotation.get("iscrowd", 0):
                instances[self._ann_to_mask(annotation, height, width, record).astype(bool)] = (
                    number
                )
        return instances

    def _native_boxes(self, record: Record) -> np.ndarray:
        """(M, 5) boxes of the record from the json (crowd regions left out)."""
        self._annotations(record)  # unknown categories -> LabelError naming the json
        try:
            boxes = read_coco_boxes(self.coco, record.extra["image_id"], self.category_to_class)
        except LabelError as error:
            raise LabelError(f"{self.json_path}: {record.image_path.name}: {error}") from error
        return np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
