"""A plain folder of your own images and labels.

Layout (``root``)::

    classes.txt                   one class name per line (or pass ``classes=[...]``)
    palette.txt                   optional: one "R G B" line per class
    images/<split>/<name>.jpg     or images/<name>.jpg with a split list <split>.txt
    labels/<split>/<name>.png     grey or palette PNGs with ids 0..K-1 (255 = ignore), or colour
                                  PNGs in the palette's colours; a missing labels/ folder = no masks

When ``images/<split>/`` does not exist, ``<split>.txt`` (one image name per line) selects the
images from ``images/``; without it every image in ``images/`` belongs to the split.
``has_background`` defaults to whether the first class is called background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agmm.data import io
from agmm.data.datasets.base import Record, SegmentationDataset, records_with_masks
from agmm.data.palette import voc_palette
from agmm.errors import DataError


class FolderDataset(SegmentationDataset):
    """images/ + labels/ with a class list."""

    def __init__(
        self,
        *,
        root: str | Path,
        classes: list[str] | str | Path | None = None,
        has_background: bool | None = None,
        palette: np.ndarray | list | None = None,
        **kwargs,
    ) -> None:
        root_path = Path(root) if root is not None else None
        if root_path is None or not root_path.is_dir():
            raise DataError(f"{root}: dataset folder does not exist")
        self.classes = _read_classes(root_path, classes)
        if has_background is None:
            has_background = self.classes[0].lower() in ("background", "_background_", "bg")
        self.has_background = has_background
        self.palette = _read_palette(root_path, palette, len(self.classes))
        super().__init__(root=root, **kwargs)

    def _scan(self) -> list[Record]:
        root = self.root
        split_images, split_labels = root / "images" / self.split, root / "labels" / self.split
        if split_images.is_dir():
            image_paths = io.list_images(split_images)
            label_dir = split_labels
        else:
            image_dir = root / "images"
            if not image_dir.is_dir():
                raise DataError(f"{image_dir}: image folder does not exist")
            label_dir = root / "labels"
            list_file = root / f"{self.split}.txt"
            if list_file.is_file():
                image_paths = []
                for line in list_file.read_text().splitlines():
                    if not line.strip():
                        continue
                    stem = Path(line.split()[0]).stem
                    image_paths.append(io.find_image(image_dir, stem) or image_dir / f"{stem}.jpg")
            else:
                image_paths = io.list_images(image_dir)
        return records_with_masks(image_paths, label_dir)


def _read_classes(root: Path, classes) -> list[str]:
    if isinstance(classes, (list, tuple)):
        names = [str(c) for c in classes]
    else:
        path = Path(classes) if classes is not None else root / "classes.txt"
        if not path.is_file():
            raise DataError(
                f"{path}: class list does not exist; write one class name per line or pass classes=[...]"
            )
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DataError(f"{root}: the class list is empty")
    if len(names) > 255:
        raise DataError(
            f"{root}: {len(names)} classes; at most 255 fit in uint8 labels with 255 = ignore"
        )
    return names


def _read_palette(root: Path, palette, num_classes: int) -> np.ndarray:
    if palette is None and (root / "palette.txt").is_file():
        path = root / "palette.txt"
        try:
            palette = [
                [int(v) for v in line.split()[:3]]
                for line in path.read_text().splitlines()
                if line.strip()
            ]
        except ValueError as error:
            raise DataError(f"{path}: expected 'R G B' per line ({error})") from error
        if len(palette) < num_classes:
            raise DataError(f"{path}: {len(palette)} colours for {num_classes} classes")
    if palette is None:
        return voc_palette(num_classes)
    return np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:num_classes]
