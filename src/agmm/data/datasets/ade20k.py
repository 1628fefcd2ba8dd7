"""ADE20K SceneParsing (Zhou et al. 2017), the 150-class ADEChallengeData2016 release.

Layout (``root`` is ``ADEChallengeData2016`` or the folder containing it)::

    images/training/ADE_train_00000001.jpg     images/validation/ADE_val_00000001.jpg
    annotations/training/ADE_train_00000001.png annotations/validation/...

``split``: ``train``/``training`` or ``val``/``validation``. Annotations store 0 = "other"
(ignored, 255 here) and class k as k + 1 (the usual "reduce zero label"); ids here are 0..149.
Weak-label PNGs are read with 255 = unlabeled by default; community block labels that use the
annotation convention (0 = unlabeled, ids + 1) need ``weak_reduce_zero_label=True``.
"""

from __future__ import annotations

from pathlib import Path

from agmm.data import io
from agmm.data.datasets.base import Record, SegmentationDataset, records_with_masks
from agmm.data.palette import voc_palette
from agmm.errors import DataError

ADE20K_CLASSES = [
    "wall",
    "building",
    "sky",
    "floor",
    "tree",
    "ceiling",
    "road",
    "bed",
    "windowpane",
    "grass",
    "cabinet",
    "sidewalk",
    "person",
    "earth",
    "door",
    "table",
    "mountain",
    "plant",
    "curtain",
    "chair",
    "car",
    "water",
    "painting",
    "sofa",
    "shelf",
    "house",
    "sea",
    "mirror",
    "rug",
    "field",
    "armchair",
    "seat",
    "fence",
    "desk",
    "rock",
    "wardrobe",
    "lamp",
    "bathtub",
    "railing",
    "cushion",
    "base",
    "box",
    "column",
    "signboard",
    "chest of drawers",
    "counter",
    "sand",
    "sink",
    "skyscraper",
    "fireplace",
    "refrigerator",
    "grandstand",
    "path",
    "stairs",
    "runway",
    "case",
    "pool table",
    "pillow",
    "screen door",
    "stairway",
    "river",
    "bridge",
    "bookcase",
    "blind",
    "coffee table",
    "toilet",
    "flower",
    "book",
    "hill",
    "bench",
    "countertop",
    "stove",
    "palm",
    "kitchen island",
    "computer",
    "swivel chair",
    "boat",
    "bar",
    "arcade machine",
    "hovel",
    "bus",
    "towel",
    "light",
    "truck",
    "tower",
    "chandelier",
    "awning",
    "streetlight",
    "booth",
    "television receiver",
    "airplane",
    "dirt track",
    "apparel",
    "pole",
    "land",
    "bannister",
    "escalator",
    "ottoman",
    "bottle",
    "buffet",
    "poster",
    "stage",
    "van",
    "ship",
    "fountain",
    "conveyer belt",
    "canopy",
    "washer",
    "plaything",
    "swimming pool",
    "stool",
    "barrel",
    "basket",
    "waterfall",
    "tent",
    "bag",
    "minibike",
    "cradle",
    "oven",
    "ball",
    "food",
    "step",
    "tank",
    "trade name",
    "microwave",
    "pot",
    "animal",
    "bicycle",
    "lake",
    "dishwasher",
    "screen",
    "blanket",
    "sculpture",
    "hood",
    "sconce",
    "vase",
    "traffic light",
    "tray",
    "ashcan",
    "fan",
    "pier",
    "crt screen",
    "plate",
    "monitor",
    "bulletin board",
    "shower",
    "radiator",
    "glass",
    "clock",
    "flag",
]

SPLIT_FOLDERS = {
    "train": "training",
    "val": "validation",
    "training": "training",
    "validation": "validation",
}


def find_ade_root(root: Path) -> Path:
    """The folder holding images/ and annotations/: root or root/ADEChallengeData2016."""
    for candidate in (root, root / "ADEChallengeData2016"):
        if (candidate / "images").is_dir():
            return candidate
    raise DataError(f"{root}: no ADE20K images/ folder here or in ADEChallengeData2016/")


class ADE20K(SegmentationDataset):
    """ADE20K / SceneParse150 (train 20,210, val 2,000 images)."""

    classes = ADE20K_CLASSES
    palette = voc_palette(len(ADE20K_CLASSES) + 1)[1:]
    has_background = False
    mask_reduce_zero_label = True

    def _scan(self) -> list[Record]:
        if self.root is None or not self.root.is_dir():
            raise DataError(f"{self.root}: ADE20K folder does not exist")
        base = find_ade_root(self.root)
        folder = SPLIT_FOLDERS.get(self.split, self.split)
        image_dir, label_dir = base / "images" / folder, base / "annotations" / folder
        self._require_image_dir(image_dir, "ADE20K")
        return records_with_masks(io.list_images(image_dir), label_dir)
