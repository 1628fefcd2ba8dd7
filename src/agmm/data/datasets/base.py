"""What every dataset shares: the file list, weak labels (files or simulated), mixed supervision,
validation with errors that name the file, transforms and the sample dict of docs/ARCHITECTURE.md.

A dataset file only says where its files are (``_scan``) and how its labels are encoded
(class attributes); everything else lives here.
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
from agmm.data.weak_labels import readers
from agmm.data.weak_labels.readers import LABEL_PNG_CONVENTIONS, read_label_png
from agmm.data.weak_labels.simulate import image_rng, simulate_weak_label
from agmm.errors import DataError, LabelError
from agmm.runtime.constants import IGNORE_INDEX

logger = logging.getLogger(__name__)

WEAK_KINDS = ("points", "scribbles", "blocks", "boxes", "tags")
SUPERVISIONS = (*WEAK_KINDS, "full")


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
        self._simulated: dict[int, dict] = {}

        records = self._scan()  # may set the classes (COCO reads them from its json)
        self.weak_png_kwargs = self._weak_png_kwargs(
            unlabeled_values, weak_reduce_zero_label, weak_label_format
        )
        self.unlabeled_values = self.weak_png_kwargs["unlabeled_values"]
        self.weak_label_dirs = self._weak_dirs(weak_label_dir)
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
        """weak_label (H, W) uint8, boxes (M, 5) float32, tags (K,) float32 for one image."""
        kind = self.kinds[index]
        record = self.records[index]
        hw = raw["image"].shape[:2]
        mask = raw["mask"]
        if kind == "full" and self._weak_files("full", record).get(".png") is not None:
            return self._weak_from_files(record, kind, hw)  # e.g. pseudo labels of a previous stage
        if kind == "full":
            if mask is None:  # a split without labels (test images): nothing is labeled
                mask = np.full(hw, IGNORE_INDEX, dtype=np.uint8)
            return {"weak_label": mask, "boxes": self._empty_boxes(), "tags": self.tags_of(mask)}
        if self._weak_dir_for(kind) is not None:
            return self._weak_from_files(record, kind, hw)
        if kind == "boxes" and self.has_native_boxes:
            boxes = self._native_boxes(record)
            if boxes is not None:
                tags = self.tags_of(None, boxes)
                if mask is not None and self.has_background:
                    tags[0] = 1.0
                weak = np.full(hw, IGNORE_INDEX, dtype=np.uint8)
                return {"weak_label": weak, "boxes": boxes, "tags": tags}
        return self._simulate(index, kind, mask, raw.get("instance_mask"))

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

    def tags_of(self, label: np.ndarray | None, boxes: np.ndarray | None = None) -> np.ndarray:
        """(K,) float32 multi-hot of the classes in a label map and/or boxes."""
        tags = np.zeros(self.num_classes, dtype=np.float32)
        if label is not None:
            present = np.unique(label)
            tags[present[present < self.num_classes].astype(np.int64)] = 1.0
        if boxes is not None and len(boxes):
            tags[np.asarray(boxes)[:, 4].astype(np.int64)] = 1.0
        return tags

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

    def _empty_boxes(self) -> np.ndarray:
        return np.zeros((0, 5), dtype=np.float32)

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

    def _weak_dirs(self, weak_label_dir) -> dict[str, Path]:
        """Kind -> folder (or tag file) of weak labels; indexes the files found there."""
        self._weak_index: dict[str, dict[str, dict[str, Path]]] = {}
        self._tag_tables: dict[str, dict[str, np.ndarray]] = {}
        if weak_label_dir is None:
            return {}
        if isinstance(weak_label_dir, Mapping):
            dirs = {str(k): Path(v) for k, v in weak_label_dir.items()}
            unknown = sorted(set(dirs) - set(SUPERVISIONS))
            if unknown:
                raise DataError(
                    f"weak_label_dir has unknown supervision kinds {unknown}; valid: "
                    f"{', '.join(SUPERVISIONS)}"
                )
        else:
            key = "mixed" if self.supervision == "mixed" else self.supervision
            dirs = {key: Path(weak_label_dir)}
        for kind, path in dirs.items():
            if not path.exists():
                raise DataError(f"{path}: weak-label folder does not exist")
            if path.is_file():  # a tag file: cls_labels.npy, tags.json or a list file
                self._tag_tables[kind] = self._read_tag_file(path)
                self._weak_index[kind] = {}
            else:
                self._weak_index[kind] = _index_files(path)
                tags_json = path / "tags.json"
                if tags_json.is_file() and kind in ("tags", "mixed"):
                    self._tag_tables[kind] = self._read_tag_file(tags_json)
        return dirs

    def _weak_png_kwargs(self, unlabeled_values, reduce_zero_label, label_format) -> dict:
        """read_label_png keyword arguments: unlabeled_values, reduce_zero_label, id_map."""
        kwargs = {
            "unlabeled_values": self.weak_unlabeled_values,
            "reduce_zero_label": False,
            "id_map": None,
        }
        if label_format is not None:
            if label_format not in LABEL_PNG_CONVENTIONS:
                raise DataError(
                    f"unknown weak_label_format {label_format!r}; valid: "
                    f"{', '.join(LABEL_PNG_CONVENTIONS)}"
                )
            convention = dict(LABEL_PNG_CONVENTIONS[label_format])
            expected = convention.pop("num_classes")
            if expected != self.num_classes:
                raise DataError(
                    f"weak_label_format {label_format!r} is for {expected} classes but "
                    f"{type(self).__name__} has {self.num_classes}"
                )
            kwargs.update(convention)
        if unlabeled_values is not None:
            kwargs["unlabeled_values"] = unlabeled_values
        if reduce_zero_label:
            kwargs["reduce_zero_label"] = True
        kwargs["unlabeled_values"] = tuple(int(v) for v in kwargs["unlabeled_values"])
        return kwargs

    def _read_tag_file(self, path: Path) -> dict[str, np.ndarray]:
        """name -> (K,) tags from cls_labels.npy (with or without a background entry), a
        make-labels tags.json, or a list file of lines ``name class class ...``."""
        suffix = path.suffix.lower()
        if suffix == ".npy":
            offset = 0
            if self.has_background:
                data = np.load(path, allow_pickle=True)
                data = data.item() if data.dtype == object else data
                first = next(iter(data.values()), None) if isinstance(data, Mapping) else None
                if first is not None and np.asarray(first).size == self.num_classes - 1:
                    offset = 1  # VOC/COCO style: object classes only, background implied
            return readers.read_tags_npy(
                path,
                num_classes=self.num_classes,
                class_offset=offset,
                background_index=0 if offset else None,
            )
        if suffix == ".json":
            return readers.read_tags_json(path, num_classes=self.num_classes)
        return readers.read_tags_list(path, num_classes=self.num_classes, class_names=self.classes)

    def _resolve_kinds(self, records: list[Record], supervision_map) -> list[str]:
        mapping = _read_supervision_map(supervision_map) if supervision_map is not None else {}
        kinds: list[str] = []
        kept: list[Record] = []
        for record in records:
            kind = mapping.get(record.name, mapping.get(record.image_path.name))
            if kind is None and self.supervision == "mixed":
                kind = next(
                    (k for k in self.weak_label_dirs if k != "mixed" and self._has_weak(k, record)),
                    None,
                )
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
            has_folder = self._weak_dir_for(kind) is not None  # kinds without one are simulated
            if has_folder and kind != "full" and not self._has_weak(kind, record):
                folder = self._weak_dir_for(kind)
                self._problem(
                    record,
                    folder if folder is not None else record.image_path,
                    f"no {kind} weak label for image {record.image_path.name} "
                    f"(expected {record.name}.png{' or .json' if kind in ('boxes', 'tags') else ''})",
                )
                continue
            kinds.append(kind)
            kept.append(record)
        records[:] = kept
        return kinds

    def _weak_key(self, kind: str) -> str:
        return kind if kind in self.weak_label_dirs else "mixed"

    def _weak_dir_for(self, kind: str) -> Path | None:
        return self.weak_label_dirs.get(self._weak_key(kind))

    def _weak_files(self, kind: str, record: Record) -> dict[str, Path]:
        """The weak-label files of a record: {'.png': path, '.json': path, '.xml': path}."""
        index = self._weak_index.get(self._weak_key(kind), {})
        for stem in (record.name, record.image_path.stem):
            if stem in index:
                return index[stem]
        return {}

    def _file_tags(self, kind: str, record: Record) -> np.ndarray | None:
        table = self._tag_tables.get(self._weak_key(kind), {})
        for key in (record.name, record.image_path.stem):
            if key in table:
                return table[key]
        return None

    def _has_weak(self, kind: str, record: Record) -> bool:
        return bool(self._weak_files(kind, record)) or (
            kind == "tags" and self._file_tags(kind, record) is not None
        )

    def _weak_from_files(self, record: Record, kind: str, hw: tuple[int, int]) -> dict:
        files = self._weak_files(kind, record)
        folder = self._weak_dir_for(kind)
        weak = self._read_weak_png(files[".png"], hw) if ".png" in files else None
        boxes, tags = None, self._file_tags(kind, record)
        if ".json" in files:
            json_boxes, json_tags = _read_sidecar(files[".json"], self.num_classes)
            boxes = json_boxes
            tags = json_tags if json_tags is not None else tags
        if boxes is None and ".xml" in files:
            boxes = np.asarray(
                readers.read_voc_xml(files[".xml"], self.classes), dtype=np.float32
            ).reshape(-1, 5)
        if kind == "boxes" and boxes is None and self.has_native_boxes:
            boxes = self._native_boxes(record)  # seed PNGs beside the dataset's own boxes
        if kind == "boxes" and boxes is None and weak is None:
            raise DataError(
                f"{folder}: no boxes for image {record.image_path.name} (expected "
                f"{record.name}.json with a 'boxes' list, {record.name}.xml in VOC format, "
                f"or a {record.name}.png of box seeds)"
            )
        if weak is None:
            if kind not in ("boxes", "tags"):
                raise DataError(f"{folder}: no {kind} label PNG for image {record.image_path.name}")
            weak = np.full(hw, IGNORE_INDEX, dtype=np.uint8)
        if tags is None:
            tags = self.tags_of(weak, boxes)
            if kind == "boxes" and self.has_background:
                tags[0] = 1.0
        if kind == "tags" and not tags.any():
            raise DataError(f"{folder}: image {record.image_path.name} has no tags")
        return {
            "weak_label": weak,
            "boxes": self._empty_boxes() if boxes is None else boxes,
            "tags": np.asarray(tags, dtype=np.float32),
        }

    def _read_weak_png(self, path: Path, hw: tuple[int, int]) -> np.ndarray:
        """(H, W) uint8 weak label from a PNG, with this dataset's unlabeled convention."""
        label = read_label_png(path, num_classes=self.num_classes, **self.weak_png_kwargs)
        if tuple(label.shape[:2]) != tuple(hw):
            raise LabelError(
                f"{path}: weak label size {label.shape[1]}x{label.shape[0]} (WxH) differs from "
                f"its image's {hw[1]}x{hw[0]}"
            )
        return label

    def _simulate(
        self, index: int, kind: str, mask: np.ndarray | None, instance_mask: np.ndarray | None
    ) -> dict:
        if index in self._simulated:
            return self._simulated[index]
        record = self.records[index]
        if mask is None:
            raise DataError(
                f"{record.image_path}: cannot simulate {kind} labels: split {self.split!r} has no "
                "dense masks; pass weak_label_dir"
            )

        params = self.weak_label_args
        if isinstance(params.get(kind), Mapping):
            params = params[kind]
        elif any(isinstance(params.get(k), Mapping) for k in SUPERVISIONS):
            params = {}
        params = dict(params)
        if kind == "boxes" and self.has_background:
            params.setdefault("skip_classes", (0,))  # as `agmm make-labels` does
        result = simulate_weak_label(
            mask,
            kind,
            rng=image_rng(self.seed, record.name),
            num_classes=self.num_classes,
            instance_mask=instance_mask,
            **params,
        )
        weak = {
            "weak_label": np.asarray(result["weak_label"], dtype=np.uint8),
            "boxes": np.asarray(result["boxes"], dtype=np.float32).reshape(-1, 5),
            "tags": np.asarray(result["tags"], dtype=np.float32),
        }
        self._simulated[index] = weak
        return weak

    def _drop_unreadable(self, records: list[Record], kinds: list[str]):
        """With skip_bad: read every image and label once and leave out the ones that fail."""
        kept, kept_kinds = [], []
        for record, kind in zip(records, kinds):
            try:
                hw = io.image_size(record.image_path)
                io.read_image(record.image_path)
                self.read_mask(record, hw)
                files = self._weak_files(kind, record)
                if ".png" in files:
                    self._read_weak_png(files[".png"], hw)
            except DataError as error:
                path = str(error).split(":")[0]
                self._problem(record, path, str(error)[len(path) + 2 :])
                continue
            kept.append(record)
            kept_kinds.append(kind)
        return kept, kept_kinds


def _index_files(folder: Path) -> dict[str, dict[str, Path]]:
    """{stem: {suffix: path}} of the label files (.png, .json, .xml) under a folder (recursive)."""
    if folder.is_file():
        return {}
    index: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in (".png", ".json", ".xml") and path.is_file():
            index.setdefault(path.stem, {}).setdefault(path.suffix.lower(), path)
    return index


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


def _read_sidecar(path: Path, num_classes: int) -> tuple[np.ndarray | None, np.ndarray | None]:
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
