"""Datasets: one file per dataset, registered in ``DATASETS`` (name -> class)."""

from __future__ import annotations

from pathlib import Path

from agmm.data.datasets.ade20k import ADE20K
from agmm.data.datasets.base import SUPERVISIONS, Record, SegmentationDataset, Skipped
from agmm.data.datasets.camvid import CamVid
from agmm.data.datasets.cityscapes import Cityscapes
from agmm.data.datasets.coco import COCO
from agmm.data.datasets.folder import FolderDataset
from agmm.data.datasets.voc import VOC
from agmm.data.synthetic import SyntheticShapes
from agmm.errors import DataError

DATASETS: dict[str, type[SegmentationDataset]] = {
    "camvid": CamVid,
    "voc": VOC,
    "coco": COCO,
    "cityscapes": Cityscapes,
    "ade20k": ADE20K,
    "folder": FolderDataset,
    "synthetic": SyntheticShapes,
}


def build_dataset(
    name: str,
    *,
    root: str | Path | None,
    split: str,
    supervision: str = "full",
    weak_label_dir=None,
    weak_label_args: dict | None = None,
    transform=None,
    seed: int = 0,
    **kwargs,
) -> SegmentationDataset:
    """Build a dataset by name (see ``DATASETS``); the extra keyword arguments go to its class
    (e.g. ``skip_bad``, ``unlabeled_values``, ``supervision_map``, ``classes`` for ``folder``,
    ``num_images`` for ``synthetic``). Returns a torch Dataset of sample dicts."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](
        root=root,
        split=split,
        supervision=supervision,
        weak_label_dir=weak_label_dir,
        weak_label_args=weak_label_args,
        transform=transform,
        seed=seed,
        **kwargs,
    )


__all__ = [
    "ADE20K",
    "COCO",
    "DATASETS",
    "SUPERVISIONS",
    "CamVid",
    "Cityscapes",
    "FolderDataset",
    "Record",
    "SegmentationDataset",
    "Skipped",
    "SyntheticShapes",
    "VOC",
    "build_dataset",
]
