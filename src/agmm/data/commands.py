"""Verbs of the data stage: ``agmm check-labels`` and ``agmm make-labels``."""

from __future__ import annotations

import argparse

from agmm.data.doctor import run_check_labels
from agmm.data.weak_labels.make_labels import (
    MAKE_LABELS_HELP,
    add_make_labels_arguments,
    run_make_labels,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``check-labels`` and ``make-labels`` to the ``agmm`` parser."""
    check = subparsers.add_parser(
        "check-labels",
        help="scan a dataset and its weak labels for problems (run this first)",
        description=(
            "Scan a dataset and its weak labels: images, missing/extra files, size mismatches, "
            "label values outside the class list, the unlabeled value, labeled pixels per class. "
            "Exit code 1 when it finds errors."
        ),
    )
    check.add_argument(
        "--data",
        required=True,
        help="dataset name (camvid, voc, coco, cityscapes, ade20k, folder, synthetic) or a folder",
    )
    check.add_argument("--root", help="dataset folder (when --data is a name)")
    check.add_argument(
        "--split", nargs="+", default=None, help="splits to scan (default: train val test)"
    )
    check.add_argument("--weak-label-dir", help="folder of weak-label PNGs (<image name>.png)")
    check.add_argument(
        "--unlabeled-values",
        nargs="+",
        type=int,
        default=None,
        help="values meaning 'unlabeled' in the weak labels (default: the dataset's, e.g. 255 21 on VOC)",
    )
    check.add_argument(
        "--reduce-zero-label",
        action="store_true",
        help="weak labels use 0 = unlabeled and ids + 1 (ADE20K block labels)",
    )
    check.add_argument(
        "--weak-label-format",
        help="a named weak-label PNG convention, e.g. cityscapes-labelids, voc-21-unlabeled",
    )
    check.add_argument(
        "--classes", nargs="+", help="class names (folder datasets without classes.txt)"
    )
    check.add_argument(
        "--max-images", type=int, default=None, help="scan at most N images per split"
    )
    check.set_defaults(func=_run_check_labels)

    make = subparsers.add_parser("make-labels", help=MAKE_LABELS_HELP, description=MAKE_LABELS_HELP)
    add_make_labels_arguments(make)
    make.set_defaults(func=_run_make_labels)


def _run_check_labels(args: argparse.Namespace) -> int:
    return run_check_labels(args)


def _run_make_labels(args: argparse.Namespace) -> int:
    return run_make_labels(args)
