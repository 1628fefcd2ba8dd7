"""``agmm make-labels``: simulate a weak-label protocol over a whole dataset and write it to disk.

Output folder layout (what ``build_dataset(..., weak_label_dir=out)`` reads back):

- ``<name>.png``: ``(H, W)`` labels, 255 = unlabeled (a palette PNG when the dataset has colours);
- ``<name>.json``: ``{"boxes": [[x0, y0, x1, y1, class], ...], "tags": [class ids]}`` for the
  boxes and tags kinds;
- ``boxes.json`` (boxes kind) and ``tags.json``: the same for all images in one file;
- ``protocol.json``: kind, every parameter, seed, dataset and the command, so that the setting can
  be named in a paper and re-created (``--protocol <out>/protocol.json``);
- the summary it prints: labeled-pixel fraction per class.

Image ``name`` always gets the generator ``image_rng(seed, name)``, so the output does not depend
on the order of images or on the other images of the split.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from tqdm import tqdm

from agmm.data.datasets import build_dataset
from agmm.data.weak_labels.protocols import describe_protocols, get_protocol
from agmm.data.weak_labels.simulate import (
    KINDS,
    image_rng,
    resolve_params,
    simulate_weak_label,
)
from agmm.errors import ConfigError, DataError
from agmm.outputs import staged_dir
from agmm.runtime.constants import IGNORE_INDEX

PROTOCOL_FORMAT = "agmm-weak-labels-v1"
MAKE_LABELS_HELP = "simulate weak labels (points, scribbles, blocks, boxes, tags) from dense masks"


def make_labels(
    dataset: Any,
    kind: str,
    out_dir: str | Path,
    *,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    progress: bool = True,
    protocol: str | None = None,
    dataset_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Simulate ``kind`` weak labels for every image of ``dataset`` and write them to ``out_dir``.

    ``dataset`` needs ``len()``, ``num_classes``, ``classes``, ``names`` (or a ``name`` in its
    samples) and dense masks through ``read_raw(i)["mask"]``, ``load_mask(i)`` or
    ``dataset[i]["mask"]`` (255 = ignore); instance masks come from ``read_raw(i)["instance_mask"]``
    or ``load_instance_mask(i)`` when it has them. ``params`` are the simulator's (see
    ``simulate.DEFAULT_PARAMS``); boxes skip class 0 by default on datasets with a background.

    The files are written into a staging folder and moved into ``out_dir`` at the end, so that a
    failure (e.g. an unreadable mask) leaves ``out_dir`` as it was.

    Returns the summary: ``num_images``, ``per_class`` rows (class, images with the class,
    images where it is labeled, labeled pixels, class pixels, labeled fraction, boxes),
    ``labeled_fraction`` (labeled / valid pixels) and ``never_labeled`` classes.
    """
    given = dict(params or {})
    if (
        kind == "boxes"
        and "skip_classes" not in given
        and getattr(dataset, "has_background", False)
    ):
        given["skip_classes"] = (0,)
    resolved = resolve_params(kind, given)
    out_dir = Path(out_dir)
    with staged_dir(out_dir) as staging:
        return _make_labels(
            dataset,
            kind,
            out_dir,
            staging,
            resolved=resolved,
            seed=seed,
            progress=progress,
            protocol=protocol,
            dataset_info=dataset_info,
        )


def _make_labels(
    dataset: Any,
    kind: str,
    out_dir: Path,
    staging: Path,
    *,
    resolved: dict[str, Any],
    seed: int,
    progress: bool,
    protocol: str | None,
    dataset_info: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """:func:`make_labels` writing into ``staging``, to be moved to ``out_dir``."""
    num_classes = int(dataset.num_classes)
    classes = [str(name) for name in dataset.classes]
    palette = getattr(dataset, "palette", None)

    class_pixels = np.zeros(num_classes, np.int64)
    labeled_pixels = np.zeros(num_classes, np.int64)
    images_with = np.zeros(num_classes, np.int64)
    images_labeled = np.zeros(num_classes, np.int64)
    box_counts = np.zeros(num_classes, np.int64)
    all_boxes: dict[str, list] = {}
    all_tags: dict[str, list[int]] = {}

    names = getattr(dataset, "names", None)
    names = None if names is None else list(names)  # once: it may be a property building a list
    for index in tqdm(range(len(dataset)), desc=f"make-labels {kind}", disable=not progress):
        name, mask, instance_mask = _mask_of(dataset, index, names)
        result = simulate_weak_label(
            mask,
            kind,
            rng=image_rng(seed, name),
            num_classes=num_classes,
            instance_mask=instance_mask,
            **resolved,
        )
        weak, boxes, tags = result["weak_label"], result["boxes"], result["tags"]
        _write_label_png(staging / f"{name}.png", weak, palette)
        tag_ids = np.flatnonzero(tags).tolist()
        all_tags[name] = tag_ids
        if kind in ("boxes", "tags"):
            sidecar = {"tags": tag_ids}
            if kind == "boxes":
                all_boxes[name] = sidecar["boxes"] = _box_rows(boxes)
            _write_json(staging / f"{name}.json", sidecar)

        mask_counts = _class_counts(mask, num_classes)
        weak_counts = _class_counts(weak, num_classes)
        class_pixels += mask_counts
        labeled_pixels += weak_counts
        images_with += mask_counts > 0
        box_counts += np.bincount(boxes[:, 4].astype(np.int64), minlength=num_classes)[:num_classes]
        if kind in ("boxes", "tags"):
            images_labeled += tags > 0
        else:
            images_labeled += weak_counts > 0

    if kind == "boxes":
        _write_json(
            staging / "boxes.json",
            {"format": "xyxy-pixel-edges", "classes": classes, "boxes": all_boxes},
        )
    _write_json(staging / "tags.json", {"classes": classes, "tags": all_tags})
    record = {
        "format": PROTOCOL_FORMAT,
        "protocol": protocol,
        "kind": kind,
        "params": _jsonable(resolved),
        "seed": int(seed),
        "dataset": {**dict(dataset_info or {}), "num_classes": num_classes, "classes": classes},
        "num_images": len(dataset),
        "command": _command_line(kind, resolved, seed, dataset_info, out_dir),
    }
    _write_json(staging / "protocol.json", record)

    per_class = [
        {
            "class": classes[c],
            "images": int(images_with[c]),
            "labeled_images": int(images_labeled[c]),
            "labeled_pixels": int(labeled_pixels[c]),
            "class_pixels": int(class_pixels[c]),
            "labeled_fraction": float(labeled_pixels[c] / class_pixels[c])
            if class_pixels[c]
            else 0.0,
            "boxes": int(box_counts[c]),
        }
        for c in range(num_classes)
    ]
    never = [classes[c] for c in range(num_classes) if images_with[c] and not images_labeled[c]]
    return {
        "out_dir": str(out_dir),
        "kind": kind,
        "protocol": protocol,
        "params": _jsonable(resolved),
        "seed": int(seed),
        "num_images": len(dataset),
        "per_class": per_class,
        "labeled_fraction": float(labeled_pixels.sum() / max(class_pixels.sum(), 1)),
        "never_labeled": never,
    }


def format_summary(summary: Mapping[str, Any]) -> str:
    """The printed summary: one row per class, then the totals and classes never labeled."""
    rows = summary["per_class"]
    width = max([len("class")] + [len(row["class"]) for row in rows])
    title = f"{summary['kind']}" + (
        f" (protocol {summary['protocol']})" if summary["protocol"] else ""
    )
    lines = [
        f"make-labels: {summary['num_images']} images, {title}, seed {summary['seed']} "
        f"-> {summary['out_dir']}",
        f"{'class':<{width}}  {'images':>7}  {'labeled':>7}  {'labeled px':>11}  "
        f"{'% of class px':>13}  {'boxes':>6}",
    ]
    for row in rows:
        lines.append(
            f"{row['class']:<{width}}  {row['images']:>7}  {row['labeled_images']:>7}  "
            f"{row['labeled_pixels']:>11}  {100 * row['labeled_fraction']:>12.3f}%  "
            f"{row['boxes']:>6}"
        )
    lines.append(f"labeled pixels: {100 * summary['labeled_fraction']:.3f}% of valid pixels")
    if summary["never_labeled"]:
        lines.append(f"present but never labeled: {', '.join(summary['never_labeled'])}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- the CLI


def add_make_labels_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``agmm make-labels`` arguments to ``parser``; pair with ``run_make_labels``."""
    parser.add_argument(
        "--data", help="dataset name (camvid, voc, coco, cityscapes, ade20k, folder, synthetic)"
    )
    parser.add_argument("--root", help="dataset folder")
    parser.add_argument("--split", default="train", help="split to label (default: train)")
    parser.add_argument("--kind", choices=KINDS, help="weak-label kind (or give --protocol)")
    parser.add_argument(
        "--protocol",
        help="a named preset (see --list-protocols) or a protocol.json written by make-labels",
    )
    parser.add_argument("--out", help="output folder for <name>.png, JSON sidecars, protocol.json")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed (default: 0, or the protocol.json's)"
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="simulator parameter, e.g. --param points_per_class=3 (repeatable; YAML values)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list-protocols", action="store_true", help="print the presets and exit")
    return parser


def run_make_labels(args: argparse.Namespace) -> int:
    """``agmm make-labels``: resolve the protocol, build the dataset, write labels, print the
    summary. Returns the exit code."""
    if getattr(args, "list_protocols", False):
        print(describe_protocols())
        return 0
    if not args.data or not args.out:
        raise ConfigError("make-labels needs --data and --out (and --kind or --protocol)")
    kind, params, seed, protocol = resolve_protocol(
        kind=args.kind, protocol=args.protocol, overrides=args.param, seed=args.seed
    )
    dataset = _build_dataset(args.data, root=args.root, split=args.split)
    info = {"name": args.data, "split": args.split, "root": args.root}
    summary = make_labels(
        dataset,
        kind,
        args.out,
        seed=seed,
        params=params,
        progress=not args.no_progress,
        protocol=protocol,
        dataset_info=info,
    )
    print(format_summary(summary))
    return 0


def resolve_protocol(
    *,
    kind: str | None,
    protocol: str | None,
    overrides: list[str] | tuple[str, ...] = (),
    seed: int | None = None,
) -> tuple[str, dict[str, Any], int, str | None]:
    """(kind, params, seed, protocol name) from ``--kind``, ``--protocol`` (preset name or
    protocol.json) and ``--param key=value`` overrides, which win over the protocol's values."""
    params: dict[str, Any] = {}
    name = None
    if protocol is not None:
        if protocol.endswith(".json") or Path(protocol).is_file():
            record = _read_protocol_file(Path(protocol))
            preset_kind, params, name = (
                record["kind"],
                dict(record["params"]),
                record.get("protocol"),
            )
            seed = record.get("seed", 0) if seed is None else seed
        else:
            preset = get_protocol(protocol)
            preset_kind, params, name = preset["kind"], preset["params"], protocol
        if kind is not None and kind != preset_kind:
            raise ConfigError(
                f"--kind {kind} contradicts protocol {protocol!r} (kind {preset_kind})"
            )
        kind = preset_kind
    if kind is None:
        raise ConfigError(f"give --kind ({', '.join(KINDS)}) or --protocol")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param {item!r}: expected KEY=VALUE, e.g. points_per_class=3")
        params[key.strip()] = yaml.safe_load(value)
    return kind, params, 0 if seed is None else int(seed), name


def _read_protocol_file(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: protocol file not found") from error
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: cannot read protocol JSON ({error})") from error
    if not isinstance(record, dict) or "kind" not in record or "params" not in record:
        raise ConfigError(f"{path}: not a make-labels protocol.json (needs 'kind' and 'params')")
    return record


def _build_dataset(name: str, *, root: str | None, split: str) -> Any:
    return build_dataset(name, root=root, split=split)


# ---------------------------------------------------------------------------------------- helpers


def _mask_of(
    dataset: Any, index: int, names: list[str] | None
) -> tuple[str, np.ndarray, np.ndarray | None]:
    """(name, mask (H, W), instance mask (H, W) or None) of one image, whichever way the dataset
    offers them."""
    sample = None
    instance_mask = None
    if hasattr(dataset, "read_raw"):
        raw = dataset.read_raw(index)
        mask, instance_mask = raw.get("mask"), raw.get("instance_mask")
    elif hasattr(dataset, "load_mask"):
        mask = dataset.load_mask(index)
        if hasattr(dataset, "load_instance_mask"):
            instance_mask = dataset.load_instance_mask(index)
    else:
        sample = dataset[index]
        mask = sample.get("mask")
    if names is not None:
        name = str(names[index])
    else:
        sample = dataset[index] if sample is None else sample
        name = str(sample["name"])
    if mask is None:
        raise DataError(
            f"{name}: no dense mask to simulate weak labels from (split without labels?)"
        )
    mask = np.asarray(mask.numpy() if hasattr(mask, "numpy") else mask)
    if instance_mask is not None:
        instance_mask = np.asarray(instance_mask)
    return name, mask, instance_mask


def _class_counts(label: np.ndarray, num_classes: int) -> np.ndarray:
    values = np.asarray(label, np.int64).ravel()
    return np.bincount(values[values < num_classes], minlength=num_classes)[:num_classes]


def _write_label_png(path: Path, label: np.ndarray, palette: np.ndarray | None) -> None:
    """(H, W) uint8 label -> PNG; a palette PNG (unlabeled = white) given ``palette: (K, 3)``."""
    image = Image.fromarray(np.asarray(label, np.uint8))
    if palette is not None and len(palette):
        colours = np.zeros((256, 3), np.uint8)
        colours[: len(palette)] = np.asarray(palette, np.uint8)[:256]
        colours[IGNORE_INDEX] = 255
        image.putpalette(colours.ravel().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _box_rows(boxes: np.ndarray) -> list[list[float]]:
    rows = np.asarray(boxes, np.float64).reshape(-1, 5).tolist()
    return [[*row[:4], int(row[4])] for row in rows]


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1 if path.name == "protocol.json" else None) + "\n")


def _jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in params.items()
    }


def _command_line(kind, params, seed, dataset_info, out_dir) -> str:
    info = dict(dataset_info or {})
    words = ["agmm", "make-labels"]
    for flag in ("name", "root", "split"):
        if info.get(flag) is not None:
            words += [f"--{'data' if flag == 'name' else flag}", str(info[flag])]
    words += ["--kind", kind, "--seed", str(seed), "--out", str(out_dir)]
    for key, value in _jsonable(params).items():
        words += ["--param", f"{key}={json.dumps(value)}"]
    return " ".join(shlex.quote(word) for word in words)


if __name__ == "__main__":  # python -m agmm.data.weak_labels.make_labels ...
    sys.exit(run_make_labels(add_make_labels_arguments(argparse.ArgumentParser()).parse_args()))
