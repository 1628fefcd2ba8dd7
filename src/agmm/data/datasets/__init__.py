"""Datasets: one file per dataset, registered in ``DATASETS`` (name -> class)."""

from __future__ import annotations

import inspect
from pathlib import Path

from agmm.data.datasets.ade20k import ADE20K
from agmm.data.datasets.base import SUPERVISIONS, Record, SegmentationDataset, Skipped
from agmm.data.datasets.camvid import CamVid
from agmm.data.datasets.cityscapes import Cityscapes
from agmm.data.datasets.coco import COCO
from agmm.data.datasets.folder import FolderDataset
from agmm.data.datasets.voc import VOC
from agmm.data.synthetic import SyntheticShapes
from agmm.errors import ConfigError, DataError

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
    valid = dataset_arguments(DATASETS[name])
    unknown = [key for key in kwargs if key not in valid]
    if unknown:
        raise ConfigError(
            f"data.dataset_args: dataset {name!r} does not take {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(sorted(valid - set(inspect.signature(build_dataset).parameters)))}"
        )
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


def dataset_arguments(cls: type) -> set[str]:
    """The keyword arguments a dataset class takes: its own and, through ``**kwargs``, its bases'."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in parameters if p.kind == p.KEYWORD_ONLY}
        names |= {p.name for p in parameters if p.kind == p.POSITIONAL_OR_KEYWORD} - {"self"}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return names


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
