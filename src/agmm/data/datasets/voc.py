"""PASCAL VOC 2012 segmentation (Everingham et al. 2010), with the SBD "train_aug" set
(Hariharan et al. 2011): 20 object classes + background (id 0), 255 = boundary / ignore.

Layout (``root`` is ``VOCdevkit/VOC2012``, or a folder containing ``VOCdevkit/VOC2012`` or
``VOC2012``)::

    JPEGImages/<name>.jpg
    SegmentationClass/<name>.png          palette PNGs (index = class id, 255 = border)
    SegmentationClassAug/<name>.png       SBD-converted grey PNGs (train_aug)
    SegmentationObject/<name>.png         instance ids (optional, used to simulate boxes)
    Annotations/<name>.xml                boxes (used by ``boxes`` supervision)
    ImageSets/Segmentation/{train,val,trainval,test}.txt
    ImageSets/SegmentationAug/train_aug.txt   (or train_aug.txt at the root)

List lines are either ``<name>`` or ``/JPEGImages/<name>.jpg /SegmentationClassAug/<name>.png``.
Weak-label PNGs as shipped by the AGMM and TEL code use 21 or 255 as unlabeled: both are
accepted by default (``unlabeled_values=(255, 21)``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agmm.data import io
from agmm.data.datasets.base import Record, SegmentationDataset
from agmm.data.palette import voc_palette
from agmm.data.weak_labels.readers import read_voc_xml
from agmm.errors import DataError
from agmm.runtime.constants import VOC_CLASSES


def find_voc_root(root: Path) -> Path:
    """The folder holding JPEGImages/ among root, root/VOC2012, root/VOCdevkit/VOC2012."""
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise DataError(f"{root}: no VOC JPEGImages/ folder here, in VOC2012/ or in VOCdevkit/VOC2012/")


class VOC(SegmentationDataset):
    """PASCAL VOC 2012 (+SBD). Extra args: ``mask_dir`` (default SegmentationClass, or
    SegmentationClassAug for ``*aug*`` splits or when SegmentationClass lacks the image)."""

    classes = list(VOC_CLASSES)
    palette = voc_palette(21)
    has_background = True
    weak_unlabeled_values = (255, 21)
    has_native_boxes = True

    def __init__(self, *, mask_dir: str | None = None, **kwargs) -> None:
        self.mask_dir = mask_dir
        super().__init__(**kwargs)

    def _scan(self) -> list[Record]:
        if self.root is None or not self.root.is_dir():
            raise DataError(f"{self.root}: VOC folder does not exist")
        base = find_voc_root(self.root)
        self.voc_root = base
        list_file = self._list_file(base)
        names = []
        for line in list_file.read_text().splitlines():
            parts = line.split()
            if parts:
                names.append(Path(parts[0]).stem)
        if self.mask_dir is not None:
            mask_dirs = [base / self.mask_dir]
        elif "aug" in self.split:
            mask_dirs = [base / "SegmentationClassAug", base / "SegmentationClass"]
        else:
            mask_dirs = [base / "SegmentationClass", base / "SegmentationClassAug"]
        mask_dirs = [d for d in mask_dirs if d.is_dir()]
        records = []
        for name in names:
            mask_path = None
            if self.split != "test" and mask_dirs:
                mask_path = next(
                    (d / f"{name}.png" for d in mask_dirs if (d / f"{name}.png").is_file()),
                    mask_dirs[0] / f"{name}.png",
                )
            records.append(
                Record(
                    name=name, image_path=base / "JPEGImages" / f"{name}.jpg", mask_path=mask_path
                )
            )
        return records

    def _list_file(self, base: Path) -> Path:
        candidates = [
            base / "ImageSets" / "Segmentation" / f"{self.split}.txt",
            base / "ImageSets" / "SegmentationAug" / f"{self.split}.txt",
            base / f"{self.split}.txt",
            self.root / f"{self.split}.txt",
        ]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise DataError(
            f"{candidates[0]}: VOC split list for {self.split!r} does not exist (also looked for "
            f"{', '.join(str(c) for c in candidates[1:])})"
        )

    def _native_boxes(self, record: Record) -> np.ndarray | None:
        path = self.voc_root / "Annotations" / f"{record.name}.xml"
        if not path.is_file():
            return None
        return np.asarray(read_voc_xml(path, self.classes), dtype=np.float32).reshape(-1, 5)

    def _read_instances(self, record: Record, mask: np.ndarray | None) -> np.ndarray | None:
        path = self.voc_root / "SegmentationObject" / f"{record.name}.png"
        if not path.is_file():
            return None
        instances = io.read_label_array(path)
        return np.where(instances == 255, 0, instances)
