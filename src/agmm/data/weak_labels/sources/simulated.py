"""Weak labels simulated from the dense mask, as ``agmm make-labels`` writes them.

Nothing is cached: simulation is deterministic from ``(seed, image name)``, so a label is made
again each time it is asked for. Measured on CamVid (480x360, a loaded 2-core CPU): points 5 ms,
blocks 3 ms, boxes 14 ms, tags 2 ms, scribbles 70 ms per image, against 4 ms to read the image
and mask. A cache only pays when an image comes back to the same process, and training loaders
start fresh workers every epoch (each image once per epoch, then the cache is gone): the
per-worker cache this replaces never hit with ``num_workers > 0`` and, with ``num_workers=0``,
kept every label of the run (2 MB per 1024x2048 Cityscapes image). Under a shuffled sampler a
bounded LRU smaller than the split would hit about as rarely, and one as large is that cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from agmm.data.weak_labels.simulate import KINDS, image_rng, simulate_weak_label
from agmm.data.weak_labels.sources.base import LabelSpace, WeakSource
from agmm.errors import DataError

if TYPE_CHECKING:
    from agmm.data.datasets.base import Record


def simulation_params(weak_label_args: Mapping, kind: str, *, has_background: bool) -> dict:
    """The simulator's parameters for one kind: ``weak_label_args`` itself, or its entry for the
    kind when it is a dict kind -> parameters (then kinds without an entry take the defaults)."""
    params = weak_label_args
    if isinstance(params.get(kind), Mapping):
        params = params[kind]
    elif any(isinstance(params.get(k), Mapping) for k in KINDS):
        params = {}
    params = dict(params)
    if kind == "boxes" and has_background:
        params.setdefault("skip_classes", (0,))  # as `agmm make-labels` does
    return params


class SimulatedSource(WeakSource):
    """``simulate_weak_label(mask, kind, rng=image_rng(seed, name), **params)`` per image."""

    def __init__(
        self, *, kind: str, params: Mapping, seed: int, labels: LabelSpace, split: str
    ) -> None:
        self.kind = kind
        self.params = dict(params)
        self.seed = int(seed)
        self.labels = labels
        self.split = split

    def targets(self, record: Record, raw: dict) -> dict:
        mask = raw["mask"]
        if mask is None:
            raise DataError(
                f"{record.image_path}: cannot simulate {self.kind} labels: split {self.split!r} "
                "has no dense masks; pass weak_label_dir"
            )
        result = simulate_weak_label(
            mask,
            self.kind,
            rng=image_rng(self.seed, record.name),
            num_classes=self.labels.num_classes,
            instance_mask=raw.get("instance_mask"),
            **self.params,
        )
        return {
            "weak_label": np.asarray(result["weak_label"], dtype=np.uint8),
            "boxes": np.asarray(result["boxes"], dtype=np.float32).reshape(-1, 5),
            "tags": np.asarray(result["tags"], dtype=np.float32),
        }
