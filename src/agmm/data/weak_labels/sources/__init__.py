"""Weak-label sources: where the weak label of each image of a dataset comes from.

One module per source, each a ``WeakSource`` (see ``base``): ``targets(record, raw)`` gives an
image's ``weak_label`` / ``boxes`` / ``tags``, ``has(record)`` says whether the source has it,
``check(record, hw)`` reads its files once.

- ``files``: PNG / JSON / XML files in a weak-label folder (``FileSource``; with ``full``
  supervision ``FileOrMaskSource``: the folder's PNG where there is one, else the mask);
- ``simulated``: simulated from the dense mask (``SimulatedSource``);
- ``boxes``: the boxes the dataset ships, VOC XML / COCO json (``NativeBoxSource``);
- ``tags``: a tag table, ``cls_labels.npy`` / ``tags.json`` / list file (``TagTableSource``);
- ``dense``: the dense mask itself, for ``full`` supervision (``DenseMaskSource``).

``choose_sources`` picks one source per supervision kind when a dataset is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agmm.data.weak_labels.simulate import KINDS
from agmm.data.weak_labels.sources.base import LabelSpace, WeakSource
from agmm.data.weak_labels.sources.boxes import NativeBoxSource
from agmm.data.weak_labels.sources.dense import DenseMaskSource
from agmm.data.weak_labels.sources.files import (
    FileOrMaskSource,
    FileSource,
    index_files,
    png_options,
    read_sidecar,
)
from agmm.data.weak_labels.sources.simulated import SimulatedSource, simulation_params
from agmm.data.weak_labels.sources.tags import TagTableSource, read_tag_table
from agmm.errors import DataError

if TYPE_CHECKING:
    from agmm.data.datasets.base import Record


@dataclass
class WeakSources:
    """The source of every supervision kind of one dataset.

    ``by_kind``: kind -> source. ``folders``: the kinds given a folder of their own, in the
    order given, each with the source of its files (mixed supervision takes an image's kind
    from the first of them that has it).
    """

    by_kind: dict[str, WeakSource]
    folders: dict[str, WeakSource]

    def __getitem__(self, kind: str) -> WeakSource:
        return self.by_kind[kind]

    def kind_from_folders(self, record: Record) -> str | None:
        """The first kind whose own folder has the image, or None."""
        return next((kind for kind, files in self.folders.items() if files.has(record)), None)


def choose_sources(
    *,
    weak_label_dir: str | Path | Mapping[str, str | Path] | None,
    supervision: str,
    labels: LabelSpace,
    png: dict,
    weak_label_args: Mapping,
    seed: int,
    split: str,
    native_boxes: Callable[[Record], np.ndarray | None] | None,
) -> WeakSources:
    """One source per supervision kind, in this order of preference:

    1. the kind's weak-label folder (``weak_label_dir`` a path for ``supervision``, or a dict
       kind -> path where ``mixed`` serves the kinds without their own): its files, or a tag
       table when the path is a file; ``full`` falls back to the mask where the folder lacks a PNG;
    2. ``boxes`` on a dataset that ships boxes (``native_boxes``): those, simulated where absent;
    3. ``full``: the dense mask;
    4. every other kind: simulated from the dense mask with ``weak_label_args``.

    ``png``: ``png_options`` of the dataset. Raises DataError for an unknown kind or a missing
    path, and for unreadable tag tables.
    """
    paths = _weak_label_paths(weak_label_dir, supervision)
    file_sources: dict[str, FileSource | TagTableSource] = {}
    for key, path in paths.items():  # one index (and tag table) per folder, shared by its kinds
        if not path.exists():
            raise DataError(f"{path}: weak-label folder does not exist")
        if path.is_file():  # a tag file: cls_labels.npy, tags.json or a list file
            index, table = {}, read_tag_table(path, labels)
        else:
            index, table = index_files(path), None
            tags_json = path / "tags.json"
            if tags_json.is_file() and key in ("tags", "mixed"):
                table = read_tag_table(tags_json, labels)
        for kind in KINDS if key == "mixed" else (key,):  # a mixed folder serves every kind
            if path.is_file() and kind == "tags":
                file_sources[kind] = TagTableSource(path=path, table=table)
            else:
                file_sources[kind] = FileSource(
                    kind=kind,
                    folder=path,
                    files=index,
                    labels=labels,
                    png=png,
                    tag_table=table,
                    native_boxes=native_boxes if kind == "boxes" else None,
                )
    by_kind: dict[str, WeakSource] = {}
    for kind in KINDS:
        if kind == "full":
            mask = DenseMaskSource(labels=labels)
            by_kind[kind] = (
                FileOrMaskSource(files=file_sources[kind], mask=mask)
                if kind in file_sources
                else mask
            )
        elif kind in file_sources:
            by_kind[kind] = file_sources[kind]
        else:
            params = simulation_params(weak_label_args, kind, has_background=labels.has_background)
            simulated = SimulatedSource(
                kind=kind, params=params, seed=seed, labels=labels, split=split
            )
            if kind == "boxes" and native_boxes is not None:
                by_kind[kind] = NativeBoxSource(
                    native_boxes=native_boxes, fallback=simulated, labels=labels
                )
            else:
                by_kind[kind] = simulated
    folders = {kind: file_sources[kind] for kind in paths if kind != "mixed"}
    return WeakSources(by_kind=by_kind, folders=folders)


def _weak_label_paths(weak_label_dir, supervision: str) -> dict[str, Path]:
    """Kind (or ``mixed``) -> folder or tag file, in the order given."""
    if weak_label_dir is None:
        return {}
    if isinstance(weak_label_dir, Mapping):
        paths = {str(k): Path(v) for k, v in weak_label_dir.items()}
        unknown = sorted(set(paths) - set(KINDS))
        if unknown:
            raise DataError(
                f"weak_label_dir has unknown supervision kinds {unknown}; valid: {', '.join(KINDS)}"
            )
        return paths
    return {supervision: Path(weak_label_dir)}


__all__ = [
    "DenseMaskSource",
    "FileOrMaskSource",
    "FileSource",
    "LabelSpace",
    "NativeBoxSource",
    "SimulatedSource",
    "TagTableSource",
    "WeakSource",
    "WeakSources",
    "choose_sources",
    "index_files",
    "png_options",
    "read_sidecar",
    "read_tag_table",
]
