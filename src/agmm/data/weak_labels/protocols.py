"""Named weak-label protocols: a paper's annotation setting as ``kind`` + simulator parameters.

``agmm make-labels --protocol cityscapes-20-clicks`` re-creates the setting; the written
``protocol.json`` records the name, kind, every parameter and the seed. Where a paper ships its own
files (VOC clicks, ScribbleSup scribbles, TEL's ADE20K blocks) read those with
``agmm.data.weak_labels.readers``; these presets simulate the same kind of annotation from masks.
"""

from __future__ import annotations

from typing import Any

from agmm.errors import ConfigError

PROTOCOLS: dict[str, dict[str, Any]] = {
    "voc-1-click-per-class": {
        "kind": "points",
        "params": {"points_per_class": 1},
        "description": "one click per class present, background included "
        "(What's the point, 1Point)",
    },
    "voc-1-click-per-instance": {
        "kind": "points",
        "params": {"points_per_instance": 1},
        "description": "one click per object instance + one per stuff/background class "
        "(What's the point, AllPoints); needs instance masks",
    },
    "cityscapes-20-clicks": {
        "kind": "points",
        "params": {"points_per_image": 20, "cover_all_classes": True},
        "description": "20 clicks per image over labeled pixels, every class present clicked "
        "(AGMM++ Table 4, Seminar/TEL setting)",
    },
    "cityscapes-50-clicks": {
        "kind": "points",
        "params": {"points_per_image": 50, "cover_all_classes": True},
        "description": "50 clicks per image (AGMM++ Table 4)",
    },
    "cityscapes-100-clicks": {
        "kind": "points",
        "params": {"points_per_image": 100, "cover_all_classes": True},
        "description": "100 clicks per image (AGMM++ Table 4)",
    },
    "voc-scribbles": {
        "kind": "scribbles",
        "params": {"length_fraction": 0.3, "width": 3, "min_region_pixels": 64},
        "description": "a 3-px stroke along 30 % of each region's skeleton, regions < 64 px "
        "skipped (simulated stand-in for ScribbleSup scribbles)",
    },
    "thin-scribbles": {
        "kind": "scribbles",
        "params": {"length_fraction": 0.2, "width": 1, "min_region_pixels": 16},
        "description": "a 1-px stroke along 20 % of each region's skeleton",
    },
    "ade20k-10pct-blocks": {
        "kind": "blocks",
        "params": {"block_size": 16, "fraction": 0.1},
        "description": "10 % of 16x16 grid blocks densely labeled (AGMM++ Table 7, TEL setting)",
    },
    "ade20k-20pct-blocks": {
        "kind": "blocks",
        "params": {"block_size": 16, "fraction": 0.2},
        "description": "20 % of 16x16 grid blocks densely labeled (AGMM++ Table 7)",
    },
    "ade20k-50pct-blocks": {
        "kind": "blocks",
        "params": {"block_size": 16, "fraction": 0.5},
        "description": "50 % of 16x16 grid blocks densely labeled (AGMM++ Table 7)",
    },
    "voc-boxes": {
        "kind": "boxes",
        "params": {"skip_classes": [0]},
        "description": "tight boxes around each instance (or connected component), none for "
        "background 0 (AGMM++ Table 6 setting; seeds come from GrabCut)",
    },
    "boxes": {
        "kind": "boxes",
        "params": {},
        "description": "tight boxes around each instance or connected component of every class",
    },
    "tags": {
        "kind": "tags",
        "params": {"min_pixels": 1},
        "description": "image-level tags: every class present in the mask",
    },
    "full": {"kind": "full", "params": {}, "description": "the dense mask itself (upper bound)"},
}


def get_protocol(name: str) -> dict[str, Any]:
    """The preset ``name`` as ``{"kind", "params", "description"}`` (a copy)."""
    if name not in PROTOCOLS:
        raise ConfigError(
            f"unknown weak-label protocol {name!r}; valid: {', '.join(sorted(PROTOCOLS))}"
        )
    preset = PROTOCOLS[name]
    return {**preset, "params": dict(preset["params"])}


def describe_protocols() -> str:
    """One line per preset: name, kind, parameters, description."""
    width = max(map(len, PROTOCOLS))
    lines = []
    for name, preset in PROTOCOLS.items():
        params = ", ".join(f"{k}={v}" for k, v in preset["params"].items()) or "-"
        lines.append(
            f"{name:<{width}}  {preset['kind']:<9}  {params}\n"
            f"{'':<{width}}  {preset['description']}"
        )
    return "\n".join(lines)
