"""The label doctor (``agmm check-labels``): what a user runs first on their data.

For each split it reports the images, missing and extra files, image/label size mismatches,
unreadable files, label values outside the class list, a guess of the value that means
"unlabeled" in the weak labels (255, or the class count as in some VOC releases, or 0 with
shifted ids as in ADE20K), the labeled-pixel fraction per class and the classes never labeled.
Errors (not warnings) make ``agmm check-labels`` exit with code 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agmm.data import io
from agmm.data.datasets import DATASETS, SegmentationDataset, build_dataset
from agmm.data.weak_labels.sources import index_files, read_sidecar
from agmm.errors import DataError
from agmm.runtime.constants import IGNORE_INDEX

DEFAULT_SPLITS = ("train", "val", "test")
_MAX_LISTED = 5


@dataclass
class SplitReport:
    """What the doctor found in one split. Pixel counts are (K,) int64 arrays."""

    split: str
    images: int = 0
    masks: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    size_mismatches: list[str] = field(default_factory=list)
    bad_values: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    mask_pixels: np.ndarray | None = None
    weak_pixels: np.ndarray | None = None
    valid_pixels: int = 0
    weak_found: int = 0
    weak_missing: list[str] = field(default_factory=list)
    weak_extra: list[str] = field(default_factory=list)
    weak_raw_counts: dict[int, int] = field(default_factory=dict)
    #: (K,) boxes plus image tags per class read from the weak labels' JSON sidecars.
    weak_annotations: np.ndarray | None = None
    unlabeled_guess: str | None = None
    never_labeled: list[str] = field(default_factory=list)


@dataclass
class DoctorReport:
    """All splits of one dataset; ``ok`` is False when any split has an error."""

    dataset: str
    root: str | None
    classes: list[str]
    unlabeled_values: tuple[int, ...]
    weak_label_dir: str | None
    splits: list[SplitReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not any(s.errors for s in self.splits)


def detect_dataset(path: str | Path) -> str:
    """Guess a dataset name from the files in a folder (for ``--data <path>``)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: not a dataset name ({', '.join(sorted(DATASETS))}) nor a folder")
    markers = [
        ("voc", ["JPEGImages", "VOC2012/JPEGImages", "VOCdevkit/VOC2012/JPEGImages"]),
        ("cityscapes", ["leftImg8bit"]),
        ("ade20k", ["ADEChallengeData2016", "images/training", "images/validation"]),
        ("coco", ["annotations"]),
        ("camvid", ["trainannot", "valannot", "testannot"]),
    ]
    for name, candidates in markers:
        if any((path / c).exists() for c in candidates):
            if name != "coco" or any((path / "annotations").glob("instances_*.json")):
                return name
    if (path / "images").is_dir():
        if (path / "classes.txt").is_file():
            return "folder"
        if "camvid" in path.name.lower():
            return "camvid"
        return "folder"
    raise DataError(
        f"{path}: cannot tell which dataset layout this is; pass --data with one of "
        f"{', '.join(sorted(DATASETS))} and --root {path}"
    )


def check_labels(
    data: str,
    *,
    root: str | Path | None = None,
    splits: Sequence[str] | None = None,
    weak_label_dir: str | Path | None = None,
    unlabeled_values: Iterable[int] | None = None,
    weak_reduce_zero_label: bool = False,
    weak_label_format: str | None = None,
    max_images: int | None = None,
    decode_images: bool = True,
    **dataset_kwargs,
) -> DoctorReport:
    """Scan a dataset (a name with ``root``, or a folder) and its weak labels; never raises on
    bad data, reports it. ``max_images`` limits each split (for a quick look)."""
    name = data
    if data not in DATASETS:
        root = data if root is None else root
        name = detect_dataset(data)
    explicit_splits = splits is not None
    splits = list(splits) if splits else _default_splits(name, root)
    report = None
    for split in splits:
        try:
            dataset = build_dataset(
                name,
                root=root,
                split=split,
                skip_bad=True,
                validate=False,
                unlabeled_values=unlabeled_values,
                weak_reduce_zero_label=weak_reduce_zero_label,
                weak_label_format=weak_label_format,
                **dataset_kwargs,
            )
        except DataError as error:
            if report is None:
                report = _empty_report(name, root, unlabeled_values, weak_label_dir, dataset_kwargs)
            if explicit_splits or "no images" in str(error):
                report.splits.append(SplitReport(split=split, errors=[str(error)]))
            else:
                report.splits.append(SplitReport(split=split, warnings=[f"not found: {error}"]))
            continue
        if report is None or not report.classes:
            previous = report.splits if report is not None else []
            report = DoctorReport(
                dataset=name,
                root=None if root is None else str(root),
                classes=list(dataset.classes),
                unlabeled_values=tuple(dataset.unlabeled_values),
                weak_label_dir=None if weak_label_dir is None else str(weak_label_dir),
                splits=previous,
            )
        report.splits.append(
            _check_split(
                dataset,
                weak_label_dir=weak_label_dir,
                max_images=max_images,
                decode_images=decode_images,
            )
        )
    if report is None:
        report = _empty_report(name, root, unlabeled_values, weak_label_dir, dataset_kwargs)
    if not any(s.images for s in report.splits):
        report.errors.append(f"{root}: no split with images found (looked for {', '.join(splits)})")
    if weak_label_dir is not None:
        _report_weak_extras(report, Path(weak_label_dir))
    return report


def _empty_report(name, root, unlabeled_values, weak_label_dir, dataset_kwargs) -> DoctorReport:
    return DoctorReport(
        dataset=name,
        root=None if root is None else str(root),
        classes=[],
        unlabeled_values=tuple(unlabeled_values or (IGNORE_INDEX,)),
        weak_label_dir=None if weak_label_dir is None else str(weak_label_dir),
    )


def _default_splits(name: str, root) -> list[str]:
    if name == "folder" and root is not None and not (Path(root) / "images" / "train").is_dir():
        return ["all"]
    return list(DEFAULT_SPLITS)


def _check_split(
    dataset: SegmentationDataset,
    *,
    weak_label_dir: str | Path | None,
    max_images: int | None,
    decode_images: bool,
) -> SplitReport:
    num_classes = dataset.num_classes
    report = SplitReport(split=dataset.split)
    report.mask_pixels = np.zeros(num_classes, np.int64)
    for skipped in dataset.skipped:
        report.missing.append(f"{skipped.path}: {skipped.reason}")
    records = dataset.records[:max_images] if max_images else dataset.records
    report.images = len(records) + len(dataset.skipped)
    weak_index = index_files(Path(weak_label_dir)) if weak_label_dir is not None else None
    if weak_index is not None:
        report.weak_pixels = np.zeros(num_classes, np.int64)
        report.weak_annotations = np.zeros(num_classes, np.int64)
    weak_raw = np.zeros(0, np.int64)
    referenced: dict[Path, set[str]] = {}
    generated = getattr(dataset, "generated", False)
    for index, record in enumerate(records):
        if record.mask_path is not None:  # even when its image is unreadable: not an extra label
            referenced.setdefault(record.mask_path.parent, set()).add(record.mask_path.name)
        if generated:  # e.g. SyntheticShapes: nothing on disk
            raw = dataset.read_raw(index)
            hw, mask = raw["image"].shape[:2], raw["mask"]
        else:
            try:
                hw = io.image_size(record.image_path)
                if decode_images:
                    io.read_image(record.image_path)
            except DataError as error:
                report.unreadable.append(str(error))
                continue
            mask = _check_mask(dataset, record, hw, report)
        if mask is not None:
            report.masks += 1
            valid = mask[mask != IGNORE_INDEX]
            report.valid_pixels += int(valid.size)
            report.mask_pixels += np.bincount(valid, minlength=num_classes)[:num_classes]
        if weak_index is not None:
            files = next(
                (weak_index[s] for s in (record.name, record.image_path.stem) if s in weak_index),
                {},
            )
            if not files:
                report.weak_missing.append(record.name)
                continue
            report.weak_found += 1
            if ".json" in files:
                _check_sidecar(dataset, files[".json"], report)
            if ".png" not in files:
                continue
            counts = _check_weak(dataset, files[".png"], hw, report)
            if counts is not None:
                if len(counts) > len(weak_raw):
                    weak_raw = np.pad(weak_raw, (0, len(counts) - len(weak_raw)))
                weak_raw[: len(counts)] += counts
    report.weak_raw_counts = {int(v): int(c) for v, c in enumerate(weak_raw) if c}
    _report_extra_masks(dataset, records, referenced, report)
    if weak_index is not None:
        report.unlabeled_guess = guess_unlabeled_value(report.weak_raw_counts, num_classes)
        labeled = report.weak_pixels + report.weak_annotations  # pixels, boxes or tags
    else:
        labeled = report.mask_pixels
    if report.masks or weak_index is not None:
        present = report.mask_pixels > 0 if report.masks else np.ones(num_classes, bool)
        report.never_labeled = [
            dataset.classes[c] for c in range(num_classes) if labeled[c] == 0 and present[c]
        ]
        absent = [
            dataset.classes[c] for c in range(num_classes) if labeled[c] == 0 and not present[c]
        ]
        if absent:
            report.warnings.append(f"classes absent from every mask: {', '.join(absent)}")
    if report.weak_missing:
        report.warnings.append(
            f"{len(report.weak_missing)} image(s) have no weak label in {weak_label_dir}, e.g. "
            f"{', '.join(report.weak_missing[:_MAX_LISTED])}"
        )
    if records and not report.masks and weak_index is None and dataset.split != "test":
        report.warnings.append("no dense masks in this split (evaluation and simulation need them)")
    for kind in ("missing", "size_mismatches", "bad_values", "unreadable"):
        report.errors.extend(getattr(report, kind))
    if report.images == 0:
        report.errors.append(f"split {dataset.split!r} has no images")
    return report


def _check_mask(dataset, record, hw, report: SplitReport) -> np.ndarray | None:
    """The converted mask of a record, or None; problems go to the report."""
    if record.mask_path is None:
        try:
            return dataset.read_mask(record, hw)
        except DataError as error:
            _file_problem(report, str(error))
            return None
    try:
        raw = io.read_label_array(record.mask_path, palette=dataset.palette)
    except DataError as error:
        report.unreadable.append(str(error))
        return None
    if raw.shape[:2] != tuple(hw):
        report.size_mismatches.append(
            f"{record.mask_path}: label is {raw.shape[1]}x{raw.shape[0]} (WxH) but its image "
            f"{record.image_path.name} is {hw[1]}x{hw[0]}"
        )
        return None
    return _converted(
        raw,
        report,
        path=record.mask_path,
        num_classes=dataset.num_classes,
        unlabeled_values=dataset.mask_unlabeled_values,
        id_map=dataset.mask_id_map,
        reduce_zero_label=dataset.mask_reduce_zero_label,
    )


def _check_weak(dataset, path: Path, hw, report: SplitReport):
    """Raw value counts of one weak-label PNG; adds its labeled pixels per class to the report."""
    try:
        raw = io.read_label_array(path)
    except DataError as error:
        report.unreadable.append(str(error))
        return None
    if raw.shape[:2] != tuple(hw):
        report.size_mismatches.append(
            f"{path}: weak label is {raw.shape[1]}x{raw.shape[0]} (WxH) but its image is "
            f"{hw[1]}x{hw[0]}"
        )
        return None
    counts = np.bincount(raw.clip(0).ravel())
    label = _converted(
        raw,
        report,
        path=path,
        num_classes=dataset.num_classes,
        **dataset.weak_png_kwargs,
    )
    labeled = label[label != IGNORE_INDEX]
    report.weak_pixels += np.bincount(labeled, minlength=dataset.num_classes)[: dataset.num_classes]
    return counts


def _check_sidecar(dataset, path: Path, report: SplitReport) -> None:
    """Adds the boxes and tags per class of one JSON sidecar to the report."""
    try:
        boxes, tags = read_sidecar(path, dataset.num_classes)
    except DataError as error:
        _file_problem(report, str(error))
        return
    num_classes = dataset.num_classes
    if boxes is not None and len(boxes):
        report.weak_annotations += np.bincount(boxes[:, 4].astype(np.int64), minlength=num_classes)
    if tags is not None:
        report.weak_annotations += (tags > 0).astype(np.int64)


def _converted(raw, report: SplitReport, *, path, num_classes, unlabeled_values, **kwargs):
    """io.to_label_map, but a bad value is reported and its pixels ignored instead of raising."""
    try:
        return io.to_label_map(
            raw, num_classes=num_classes, path=path, unlabeled_values=unlabeled_values, **kwargs
        )
    except DataError as error:
        report.bad_values.append(str(error))
    values = np.unique(raw)
    if kwargs.get("id_map") is not None:
        valid = (values >= 0) & (values < len(io._lookup_table(kwargs["id_map"])))
    elif kwargs.get("reduce_zero_label"):
        valid = (values >= 0) & (values <= num_classes)
    else:
        valid = (values >= 0) & (values < num_classes)
    bad = values[~valid & ~np.isin(values, list(unlabeled_values))]
    cleaned = np.where(np.isin(raw, bad), IGNORE_INDEX, raw)
    return io.to_label_map(
        cleaned, num_classes=num_classes, path=path, unlabeled_values=unlabeled_values, **kwargs
    )


def _file_problem(report: SplitReport, message: str) -> None:
    if "size" in message or "says" in message:
        report.size_mismatches.append(message)
    elif "value" in message:
        report.bad_values.append(message)
    else:
        report.unreadable.append(message)


def _report_extra_masks(dataset, records, referenced: dict[Path, set[str]], report) -> None:
    """Label files in the split's label folders that no image of the split uses (warnings)."""
    if not referenced or len(records) < len(dataset.records):
        return
    suffixes = {r.mask_path.name[len(r.name) :] for r in records if r.mask_path is not None}
    for folder, names in referenced.items():
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.name not in names and any(path.name.endswith(s) for s in suffixes):
                report.extra.append(str(path))
    if report.extra:
        report.warnings.append(
            f"{len(report.extra)} label file(s) without an image in split {dataset.split!r}, e.g. "
            f"{', '.join(report.extra[:_MAX_LISTED])}"
        )


def _report_weak_extras(report: DoctorReport, weak_label_dir: Path) -> None:
    """Weak-label PNGs whose name matches no image of the scanned splits (a warning)."""
    if not weak_label_dir.is_dir():
        report.errors.append(f"{weak_label_dir}: weak-label folder does not exist")
        return
    index = index_files(weak_label_dir)
    covered = sum(s.weak_found for s in report.splits)
    known = covered + sum(len(s.weak_missing) for s in report.splits)
    pngs = [stem for stem, files in index.items() if ".png" in files]
    extra = len(pngs) - covered
    if known and extra > 0 and report.splits:
        report.splits[-1].warnings.append(
            f"{extra} weak-label file(s) in {weak_label_dir} match no image of the scanned splits"
        )


def guess_unlabeled_value(raw_counts: dict[int, int], num_classes: int) -> str | None:
    """Which raw value most likely means "unlabeled" in weak-label PNGs, from their histogram.

    Weak labels are sparse, so the unlabeled value is the one that covers most pixels; the
    candidates are 255, ``num_classes`` (e.g. 21 on VOC) and 0 with ids shifted up by one.
    """
    total = sum(raw_counts.values())
    if not total:
        return None
    value, count = max(raw_counts.items(), key=lambda item: item[1])
    share = f"{100 * count / total:.1f}% of pixels"
    if value == IGNORE_INDEX:
        return f"255 ({share})"
    if value == num_classes:
        return (
            f"{num_classes} = the class count ({share}); read these labels with "
            f"--unlabeled-values 255 {num_classes}"
        )
    if value == 0 and count / total > 0.5:
        shifted = max(raw_counts) == num_classes
        hint = "; ids look shifted up by one (use --reduce-zero-label)" if shifted else ""
        return f"0 ({share}){hint}"
    return f"unclear: most frequent value is {value} ({share}); the labels may be dense"


def format_report(report: DoctorReport) -> str:
    """The text `agmm check-labels` prints."""
    lines = [
        f"dataset {report.dataset} at {report.root}: {len(report.classes)} classes; "
        f"unlabeled values in weak labels: {', '.join(map(str, report.unlabeled_values))}",
    ]
    if report.weak_label_dir:
        lines.append(f"weak labels: {report.weak_label_dir}")
    for split in report.splits:
        lines.append("")
        if not split.images and not split.errors and split.mask_pixels is None:
            lines.append(f"split {split.split}: not present")
            continue
        lines.append(f"split {split.split}: {split.images} images, {split.masks} dense masks")
        if split.mask_pixels is not None:
            lines.append(
                f"  missing files: {len(split.missing)}   extra label files: {len(split.extra)}   "
                f"size mismatches: {len(split.size_mismatches)}   bad label values: "
                f"{len(split.bad_values)}   unreadable: {len(split.unreadable)}"
            )
        if split.weak_pixels is not None:
            lines.append(
                f"  weak labels: {split.weak_found} found, {len(split.weak_missing)} missing; "
                f"unlabeled value guess: {split.unlabeled_guess}"
            )
        if split.mask_pixels is not None and (split.masks or split.weak_pixels is not None):
            lines.extend(_class_table(report.classes, split))
        if split.never_labeled:
            lines.append(f"  classes never labeled: {', '.join(split.never_labeled)}")
        for message in split.errors[:_MAX_LISTED]:
            lines.append(f"  ERROR {message}")
        if len(split.errors) > _MAX_LISTED:
            lines.append(f"  ... and {len(split.errors) - _MAX_LISTED} more error(s)")
        for message in split.warnings:
            lines.append(f"  warning: {message}")
    for message in report.errors:
        lines.append(f"ERROR {message}")
    errors = len(report.errors) + sum(len(s.errors) for s in report.splits)
    lines.append("")
    lines.append("OK: no errors" if errors == 0 else f"FAILED: {errors} error(s)")
    return "\n".join(lines)


def _class_table(classes: list[str], split: SplitReport) -> list[str]:
    width = max([5] + [len(c) for c in classes])
    weak = split.weak_pixels
    header = f"  {'class':<{width}}  {'% of mask px':>12}"
    if weak is not None:
        header += f"  {'weak px':>10}  {'% labeled':>9}"
    rows = [header]
    valid = max(split.valid_pixels, 1)
    for c, name in enumerate(classes):
        row = f"  {name:<{width}}  {100 * split.mask_pixels[c] / valid:>11.2f}%"
        if weak is not None:
            fraction = (
                f"{100 * weak[c] / split.mask_pixels[c]:>8.3f}%"
                if split.mask_pixels[c]
                else f"{'-':>9}"
            )
            row += f"  {int(weak[c]):>10}  {fraction}"
        rows.append(row)
    return rows


def run_check_labels(args: argparse.Namespace) -> int:
    """``agmm check-labels``: print the report; exit code 1 when it found errors."""
    kwargs = {}
    if getattr(args, "classes", None):
        kwargs["classes"] = args.classes
    report = check_labels(
        args.data,
        root=args.root,
        splits=args.split,
        weak_label_dir=args.weak_label_dir,
        unlabeled_values=args.unlabeled_values,
        weak_reduce_zero_label=args.reduce_zero_label,
        weak_label_format=args.weak_label_format,
        max_images=args.max_images,
        **kwargs,
    )
    print(format_report(report))
    return 0 if report.ok else 1
