"""What every dataset shares: the file list, the choice of each image's weak-label source
(``agmm.data.weak_labels.sources``) and mixed supervision, validation with errors that name the
file, transforms and the sample dict of docs/ARCHITECTURE.md.

A dataset file only says where its files are (``_scan``, ``_native_boxes``, ``_read_instances``)
and how its labels are encoded (class attributes); everything else lives here.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from agmm.data import io
from agmm.data.transforms import to_tensor_sample
from agmm.data.weak_labels.simulate import KINDS
from agmm.data.weak_labels.sources import LabelSpace, WeakSources, choose_sources, png_options
from agmm.errors import DataError
from agmm.runtime.constants import IGNORE_INDEX

logger = logging.getLogger(__name__)

SUPERVISIONS = KINDS  # points, scribbles, blocks, boxes, tags, full: what the simulator makes


@dataclass
class Record:
    """One image of a split: its id, files, and dataset-specific extras (e.g. a COCO image id)."""

    name: str
    image_path: Path
    mask_path: Path | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Skipped:
    """An image left out by ``skip_bad=True``, and why."""

    name: str
    path: str
    reason: str


def records_with_masks(image_paths: Iterable[Path], label_dir: Path) -> list[Record]:
    """One Record per image, named by its stem, with the mask ``label_dir/<stem>.png``; no masks
    when ``label_dir`` does not exist (an unlabelled split)."""
    has_labels = label_dir.is_dir()
    return [
        Record(
            name=path.stem,
            image_path=path,
            mask_path=label_dir / f"{path.stem}.png" if has_labels else None,
        )
        for path in image_paths
    ]


def name_seed(seed: int, name: str) -> list[int]:
    """Seed sequence for a per-image generator: stable across runs, processes and platforms."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return [int(seed), int.from_bytes(digest[:8], "little")]


class SegmentationDataset(Dataset):
    """Base class: subclasses set the class attributes below and implement ``_scan``.

    Args (keyword-only; see docs/data.md):
        root: dataset folder. split: split name (dataset-specific, e.g. ``train``).
        supervision: ``points|scribbles|blocks|boxes|tags|full``, or ``mixed`` with a
            ``supervision_map`` / per-kind ``weak_label_dir``.
        weak_label_dir: folder of weak-label PNGs (one per image, named after the image;
            255 or a value in ``unlabeled_values`` = unlabeled), or a dict kind -> folder for mixed
            supervision. None: simulate from the dense mask, deterministically from (seed, name).
        weak_label_args: parameters of the simulator (e.g. ``{"points_per_class": 3}``), or a
            dict kind -> parameters.
        supervision_map: dict or JSON/CSV file ``name -> kind`` for mixed supervision.
        unlabeled_values: values of weak-label PNGs that mean "unlabeled" (default: the
            dataset's ``weak_unlabeled_values``).
        weak_reduce_zero_label: weak PNGs use 0 = unlabeled and ids shifted up by one (ADE20K style).
        weak_label_format: a key of ``agmm.data.weak_labels.LABEL_PNG_CONVENTIONS`` (e.g.
            ``cityscapes-labelids`` for N-click files in raw labelIds) setting the three above.
        transform: callable on the numpy sample (see ``agmm.data.transforms``).
        seed: seed of weak-label simulation.
        skip_bad: leave out images whose files are missing, unreadable or inconsistent (checked
            when the dataset is built), log them and list them in ``self.skipped``; otherwise
            such an image raises DataError/LabelError naming the file.
        validate: read every image and label when the dataset is built (default: ``skip_bad``);
            missing files are always checked.
    """

    classes: list[str] = []
    palette: np.ndarray = np.zeros((0, 3), dtype=np.uint8)
    has_background: bool = False
    ignore_index: int = IGNORE_INDEX
    #: Values that mean "unlabeled" in weak-label PNGs, besides 255.
    weak_unlabeled_values: tuple[int, ...] = (IGNORE_INDEX,)
    #: Values that mean "ignore" in dense masks, besides 255.
    mask_unlabeled_values: tuple[int, ...] = (IGNORE_INDEX,)
    #: Raw mask id -> class id lookup (e.g. Cityscapes labelIds), or None.
    mask_id_map: np.ndarray | None = None
    #: Masks store 0 = ignore and class k as k + 1 (ADE20K).
    mask_reduce_zero_label: bool = False
    #: Whether the dataset ships its own boxes (VOC XML, COCO json): then ``boxes`` supervision
    #: uses them instead of boxes simulated from the mask.
    has_native_boxes: bool = False

    def __init__(
        self,
        *,
        root: str | Path | None,
        split: str,
        supervision: str = "full",
        weak_label_dir: str | Path | Mapping[str, str | Path] | None = None,
        weak_label_args: Mapping | None = None,
        supervision_map: str | Path | Mapping[str, str] | None = None,
        unlabeled_values: Iterable[int] | None = None,
        weak_reduce_zero_label: bool = False,
        weak_label_format: str | None = None,
        transform: Callable[[dict], dict] | None = None,
        seed: int = 0,
        skip_bad: bool = False,
        validate: bool | None = None,
    ) -> None:
        if supervision not in (*SUPERVISIONS, "mixed"):
            raise DataError(
                f"unknown supervision {supervision!r}; valid: {', '.join(SUPERVISIONS)}, mixed"
            )
        self.root = Path(root) if root is not None else None
        self.split = split
        self.supervision = supervision
        self.weak_label_args = dict(weak_label_args or {})
        self.transform = transform
        self.seed = int(seed)
        self.skip_bad = skip_bad
        self.skipped: list[Skipped] = []

        records = self._scan()  # may set the classes (COCO reads them from its json)
        labels = LabelSpace(classes=tuple(self.classes), has_background=self.has_background)
        self.weak_png_kwargs = png_options(
            labels=labels,
            dataset=type(self).__name__,
            default_unlabeled=self.weak_unlabeled_values,
            unlabeled_values=unlabeled_values,
            reduce_zero_label=weak_reduce_zero_label,
            label_format=weak_label_format,
        )
        self.unlabeled_values = self.weak_png_kwargs["unlabeled_values"]
        #: The weak-label source of each supervision kind, chosen once (see choose_sources).
        self.sources: WeakSources = choose_sources(
            weak_label_dir=weak_label_dir,
            supervision=supervision,
            labels=labels,
            png=self.weak_png_kwargs,
            weak_label_args=self.weak_label_args,
            seed=self.seed,
            split=split,
            native_boxes=self._native_boxes if self.has_native_boxes else None,
        )
        records = self._check_files(records)
        kinds = self._resolve_kinds(records, supervision_map)
        if skip_bad if validate is None else validate:
            records, kinds = self._drop_unreadable(records, kinds)
        if not records:
            raise DataError(f"{self._where()}: split {split!r} has no images")
        self.records: list[Record] = records
        self.kinds: list[str] = kinds

    # ----------------------------------------------------------------- to implement per dataset
    def _scan(self) -> list[Record]:
        """The split's images (and mask paths); raise DataError for a missing folder or list."""
        raise NotImplementedError

    def _read_instances(self, record: Record, mask: np.ndarray | None) -> np.ndarray | None:
        """(H, W) int instance ids (0 = none) if the dataset has them, for simulating boxes."""
        return None

    def _native_boxes(self, record: Record) -> np.ndarray | None:
        """(M, 5) float32 boxes shipped with the dataset, or None."""
        return None

    def _require_image_dir(self, image_dir: Path, dataset: str) -> None:
        """For ``_scan``: DataError when the split's image folder does not exist."""
        if not image_dir.is_dir():
            raise DataError(
                f"{image_dir}: {dataset} image folder for split {self.split!r} does not exist"
            )

    # ----------------------------------------------------------------------------- public API
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def names(self) -> list[str]:
        return [record.name for record in self.records]

    def read_raw(self, index: int) -> dict:
        """The un-augmented arrays of one image: image (H, W, 3) uint8, mask (H, W) uint8 or None
        (the split has no dense labels), instance_mask (H, W) int or None."""
        record = self.records[index]
        image = io.read_image(record.image_path)
        mask = self.read_mask(record, image.shape[:2])
        return {"image": image, "mask": mask, "instance_mask": self._read_instances(record, mask)}

    def read_mask(self, record: Record, image_hw: tuple[int, int] | None) -> np.ndarray | None:
        """(H, W) uint8 dense mask (255 = ignore) or None when the record has none."""
        if record.mask_path is None:
            return None
        return io.read_label_map(
            record.mask_path,
            num_classes=self.num_classes,
            unlabeled_values=self.mask_unlabeled_values,
            id_map=self.mask_id_map,
            reduce_zero_label=self.mask_reduce_zero_label,
            palette=self.palette,
            expected_hw=image_hw,
        )

    def weak_targets(self, index: int, raw: dict) -> dict:
        """weak_label (H, W) uint8, boxes (M, 5) float32, tags (K,) float32 for one image, from
        the source of its supervision kind."""
        return self.sources[self.kinds[index]].targets(self.records[index], raw)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        record = self.records[index]
        raw = self.read_raw(index)
        weak = self.weak_targets(index, raw)
        hw = raw["image"].shape[:2]
        mask = raw["mask"] if raw["mask"] is not None else np.full(hw, IGNORE_INDEX, np.uint8)
        sample = {
            "image": raw["image"],
            "weak_label": weak["weak_label"],
            "mask": mask,
            "boxes": weak["boxes"],
        }
        if self.transform is not None:
            sample = self.transform(sample)
        sample = to_tensor_sample(sample)
        sample["tags"] = torch.as_tensor(weak["tags"], dtype=torch.float32)
        sample["supervision"] = self.kinds[index]
        sample["name"] = record.name
        sample["image_path"] = str(record.image_path)
        return sample

    def colorize(self, label: np.ndarray) -> np.ndarray:
        """(H, W) class ids -> (H, W, 3) uint8 with the palette; 255 -> white."""
        lut = np.full((256, 3), 255, dtype=np.uint8)
        lut[: self.num_classes] = self.palette
        return lut[np.asarray(label, dtype=np.int64).clip(0, 255)]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"images={len(self)}, classes={self.num_classes}, supervision={self.supervision!r})"
        )

    # ---------------------------------------------------------------------------- internals
    def _where(self) -> str:
        return str(self.root) if self.root is not None else type(self).__name__

    def _problem(self, record: Record, path: Path | str, reason: str) -> None:
        """Skip the record (skip_bad) or raise a DataError naming the file."""
        if not self.skip_bad:
            raise DataError(f"{path}: {reason}")
        logger.warning("skipping %s: %s: %s", record.name, path, reason)
        self.skipped.append(Skipped(name=record.name, path=str(path), reason=reason))

    def _check_files(self, records: list[Record]) -> list[Record]:
        kept = []
        for record in records:
            if not record.image_path.is_file():
                self._problem(
                    record,
                    record.image_path,
                    f"image of {record.name!r} (split {self.split!r}) is missing",
                )
                continue
            if record.mask_path is not None and not record.mask_path.is_file():
                self._problem(
                    record, record.mask_path, f"label of image {record.image_path.name} is missing"
                )
                continue
            kept.append(record)
        return kept

    def _resolve_kinds(self, records: list[Record], supervision_map) -> list[str]:
        mapping = _read_supervision_map(supervision_map) if supervision_map is not None else {}
        kinds: list[str] = []
        kept: list[Record] = []
        for record in records:
            kind = mapping.get(record.name, mapping.get(record.image_path.name))
            if kind is None and self.supervision == "mixed":
                kind = self.sources.kind_from_folders(record)
            if kind is None:
                kind = self.supervision
            if kind == "mixed":
                self._problem(
                    record,
                    record.image_path,
                    "mixed supervision, but neither the supervision map nor a weak-label folder "
                    "gives a kind for this image",
                )
                continue
            if kind not in SUPERVISIONS:
                raise DataError(
                    f"{supervision_map}: image {record.name!r} has unknown supervision {kind!r};"
                    f" valid: {', '.join(SUPERVISIONS)}"
                )
            source = self.sources[kind]
            if not source.has(record):
                self._problem(
                    record,
                    source.location,
                    f"no {kind} weak label for image {record.image_path.name} "
                    f"(expected {record.name}.png{' or .json' if kind in ('boxes', 'tags') else ''})",
                )
                continue
            kinds.append(kind)
            kept.append(record)
        records[:] = kept
        return kinds

    def _drop_unreadable(self, records: list[Record], kinds: list[str]):
        """With skip_bad: read every image and label once and leave out the ones that fail."""
        kept, kept_kinds = [], []
        for record, kind in zip(records, kinds):
            try:
                hw = io.image_size(record.image_path)
                io.read_image(record.image_path)
                self.read_mask(record, hw)
                self.sources[kind].check(record, hw)
            except DataError as error:
                path = str(error).split(":")[0]
                self._problem(record, path, str(error)[len(path) + 2 :])
                continue
            kept.append(record)
            kept_kinds.append(kind)
        return kept, kept_kinds


def _read_supervision_map(source) -> dict[str, str]:
    """name -> kind from a dict, a JSON object file, or a CSV/TSV/space-separated file of two columns."""
    if isinstance(source, Mapping):
        return {str(k): str(v) for k, v in source.items()}
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{path}: supervision map file does not exist")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: not valid JSON ({error})") from error
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object name -> supervision kind")
        return {str(k): str(v) for k, v in data.items()}
    mapping = {}
    for line_number, row in enumerate(csv.reader(text.replace("\t", ",").splitlines()), 1):
        if len(row) == 1:
            row = row[0].split()
        row = [cell.strip() for cell in row if cell.strip()]
        if not row or row[0].startswith("#") or (line_number == 1 and row[-1] == "supervision"):
            continue
        if len(row) != 2:
            raise DataError(f"{path}:{line_number}: expected 'name,kind', got {','.join(row)!r}")
        mapping[row[0]] = row[1]
    return mapping
