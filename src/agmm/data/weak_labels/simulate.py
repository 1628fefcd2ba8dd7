"""Simulate weak labels from dense masks, reproducibly: points, scribbles, blocks, boxes, tags.

Every simulator takes a dense mask ``(H, W)`` (class ids ``0..K-1``, ``ignore_index`` = ignore) and
a ``np.random.Generator``, and returns the same dict:

- ``weak_label``: ``(H, W)`` uint8, class ids, 255 = unlabeled. An ignore pixel is never labeled.
- ``boxes``: ``(M, 5)`` float32 ``[x0, y0, x1, y1, class_id]`` in pixel-edge coordinates: a box
  covers the pixels ``x0 <= x < x1``, ``y0 <= y < y1`` (inclusive-exclusive, like COCO's
  ``x + w``), so a one-pixel object at column 3 has ``x0 = 3, x1 = 4``. ``M = 0`` except for boxes.
- ``tags``: ``(K,)`` float32 multi-hot image tags: the classes the annotation itself tells about
  (classes present in ``weak_label`` for points/scribbles/blocks/full; classes present in the mask
  for boxes and tags).

The per-kind parameters and their defaults are in ``DEFAULT_PARAMS``; ``docs/weak_labels.md``
describes each protocol. Loops run over classes or connected components, never over pixels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from skimage.morphology import skeletonize

from agmm.errors import ConfigError, LabelError
from agmm.runtime.constants import IGNORE_INDEX

KINDS = ("points", "scribbles", "blocks", "boxes", "tags", "full")

# Defaults of every parameter of every kind. ``None`` means "off" (the points modes are exclusive).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "points": {
        "points_per_class": 1,  # N clicks per class present
        "points_per_instance": None,  # N per instance (needs instance_mask) and per stuff class
        "points_per_image": None,  # N clicks over all labeled pixels (Cityscapes 20/50/100 clicks)
        "cover_all_classes": True,  # points_per_image: at least one click per class present
        "radius": 0,  # label the disk of this radius around each click, clipped to its region
        "boundary_margin": 0,  # prefer pixels at least this far (px) from any class boundary
    },
    "scribbles": {
        "length_fraction": 0.5,  # stroke length / skeleton length, per connected region
        "width": 1,  # stroke thickness in pixels, clipped to its region
        "min_region_pixels": 16,  # connected regions smaller than this get no scribble
    },
    "blocks": {
        "block_size": 16,  # side of a grid block in pixels
        "fraction": 0.1,  # fraction of grid blocks kept densely labeled
        "cover_all_classes": False,  # first keep one block per class present, then fill at random
    },
    "boxes": {
        "min_box_pixels": 16,  # instances / components smaller than this get no box (specks)
        "skip_classes": (),  # classes that never get a box (e.g. background 0 on VOC)
    },
    "tags": {
        "min_pixels": 1,  # a class is tagged when it covers at least this many pixels
    },
    "full": {},
}

POINT_MODES = ("points_per_class", "points_per_instance", "points_per_image")


def image_rng(seed: int, name: str) -> np.random.Generator:
    """The generator for one image: ``default_rng([seed, stable_hash(name)])``.

    Datasets that simulate weak labels on the fly use it too, so that they give exactly the labels
    ``agmm make-labels`` writes for the same seed.
    """
    return np.random.default_rng([int(seed), stable_hash(name)])


def stable_hash(name: str) -> int:
    """A hash of ``name`` that is the same in every process and Python version (64 bits)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def resolve_params(kind: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fill ``params`` with the defaults of ``kind`` and check names and values.

    Raises ConfigError on an unknown kind or parameter (listing the valid ones) or a bad value.
    """
    if kind not in DEFAULT_PARAMS:
        raise ConfigError(f"unknown weak-label kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    params = dict(params or {})
    defaults = DEFAULT_PARAMS[kind]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        valid = ", ".join(defaults) or "(none)"
        raise ConfigError(f"unknown parameter(s) {unknown} for kind {kind!r}; valid: {valid}")
    if kind == "points":
        given = [mode for mode in POINT_MODES if params.get(mode) is not None]
        if len(given) > 1:
            raise ConfigError(f"points: give only one of {', '.join(POINT_MODES)}, got {given}")
        if given and given[0] != "points_per_class":
            params.setdefault("points_per_class", None)
    resolved = {**defaults, **params}
    _check_values(kind, resolved)
    return resolved


def _check_values(kind: str, params: dict[str, Any]) -> None:
    def positive_int(key: str, allow_zero: bool = False, allow_none: bool = False) -> None:
        value = params[key]
        if value is None and allow_none:
            return
        low = 0 if allow_zero else 1
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{kind}: {key} must be an integer >= {low}, got {value!r}")

    def fraction(key: str) -> None:
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ConfigError(f"{kind}: {key} must be a number in (0, 1], got {value!r}")

    if kind == "points":
        for mode in POINT_MODES:
            positive_int(mode, allow_none=True)
        if all(params[mode] is None for mode in POINT_MODES):
            raise ConfigError(f"points: set one of {', '.join(POINT_MODES)}")
        positive_int("radius", allow_zero=True)
        positive_int("boundary_margin", allow_zero=True)
    elif kind == "scribbles":
        fraction("length_fraction")
        positive_int("width")
        positive_int("min_region_pixels")
    elif kind == "blocks":
        positive_int("block_size")
        fraction("fraction")
    elif kind == "boxes":
        positive_int("min_box_pixels")
        skip = params["skip_classes"]
        if isinstance(skip, (int, np.integer)):
            params["skip_classes"] = (int(skip),)
        params["skip_classes"] = tuple(int(c) for c in params["skip_classes"])
    elif kind == "tags":
        positive_int("min_pixels")


def simulate_weak_label(
    mask: np.ndarray,
    kind: str,
    *,
    rng: np.random.Generator,
    num_classes: int,
    instance_mask: np.ndarray | None = None,
    ignore_index: int = 255,
    **params: Any,
) -> dict[str, np.ndarray]:
    """Simulate a weak label of ``kind`` from a dense ``mask: (H, W)`` int.

    ``mask`` holds class ids ``0..num_classes-1`` and ``ignore_index`` (never labeled).
    ``instance_mask: (H, W)`` int, one id per instance (0 and ``ignore_index`` = no instance), is
    used by ``points_per_instance`` and by boxes. Returns ``dict(weak_label: (H, W) uint8 with 255 =
    unlabeled, boxes: (M, 5) float32, tags: (K,) float32)``; the same ``rng`` state gives the same
    result. See ``DEFAULT_PARAMS`` for the parameters of each kind.
    """
    params = resolve_params(kind, params)
    labels = _checked_labels(mask, num_classes, ignore_index)
    if instance_mask is not None:
        instance_mask = np.asarray(instance_mask)
        if instance_mask.shape != labels.shape:
            raise LabelError(
                f"instance mask has shape {instance_mask.shape} but the mask has {labels.shape}"
            )
        no_instance = (instance_mask == ignore_index) | (instance_mask < 0)
        instance_mask = np.where(no_instance, 0, instance_mask).astype(np.int64)
    no_boxes = np.zeros((0, 5), np.float32)

    if kind == "points":
        weak = _simulate_points(labels, rng, instance_mask, params)
    elif kind == "scribbles":
        weak = _simulate_scribbles(labels, rng, params)
    elif kind == "blocks":
        weak = _simulate_blocks(labels, rng, params)
    elif kind == "full":
        weak = labels.astype(np.uint8)
    else:  # boxes, tags: no pixel label here (box seeds come from GrabCut in agmm.seeds)
        weak = np.full(labels.shape, IGNORE_INDEX, np.uint8)

    if kind == "boxes":
        boxes = boxes_from_mask(
            labels,
            instance_mask=instance_mask,
            min_box_pixels=params["min_box_pixels"],
            skip_classes=params["skip_classes"],
        )
        tags = tags_from_mask(labels, num_classes)
    elif kind == "tags":
        boxes, tags = no_boxes, tags_from_mask(labels, num_classes, min_pixels=params["min_pixels"])
    else:
        boxes, tags = no_boxes, tags_from_mask(weak, num_classes)
    return {"weak_label": weak, "boxes": boxes, "tags": tags}


def _checked_labels(mask: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """The mask as int64 ``(H, W)`` with every ignore pixel set to 255; LabelError on bad values."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise LabelError(f"mask must be (H, W), got shape {mask.shape}")
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool):
        raise LabelError(f"mask must hold integer class ids, got dtype {mask.dtype}")
    if not 0 < num_classes <= IGNORE_INDEX:
        raise LabelError(f"num_classes must be in 1..255 (uint8 labels), got {num_classes}")
    labels = mask.astype(np.int64)
    ignored = labels == ignore_index
    bad = ~ignored & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        values = np.unique(labels[bad])[:5].tolist()
        raise LabelError(
            f"mask has values {values} outside the class ids 0..{num_classes - 1} "
            f"(ignore = {ignore_index})"
        )
    labels[ignored] = IGNORE_INDEX
    return labels


def tags_from_mask(labels: np.ndarray, num_classes: int, *, min_pixels: int = 1) -> np.ndarray:
    """``(K,)`` float32 multi-hot of the classes covering at least ``min_pixels`` pixels of
    ``labels: (H, W)`` (255 and values >= K are not counted)."""
    values = np.asarray(labels).ravel().astype(np.int64)
    values = values[(values >= 0) & (values < num_classes)]
    counts = np.bincount(values, minlength=num_classes)
    return (counts >= min_pixels).astype(np.float32)


# ----------------------------------------------------------------------------------------- helpers


def _first_n_per_group(
    groups: np.ndarray, keys: np.ndarray, n: int, preferred: np.ndarray | None = None
) -> np.ndarray:
    """Positions of the ``n`` items with the smallest ``keys`` (in [0, 1)) in each group;
    ``groups: (N,)`` non-negative ints. Items with ``preferred`` True come before the others of
    their group. Returns sorted positions, ``min(n, group size)`` per group."""
    if groups.size == 0:
        return np.zeros(0, np.int64)
    if preferred is not None:
        keys = keys + ~preferred  # in [0, 2): preferred items first
    # Sorting millions of pixels to keep a few per group is slow: sort only the items below a
    # per-group threshold that admits about 4 (n + 16) of them. Still exact: a group that gets
    # fewer candidates than it needs is retried with all of its items.
    counts = np.bincount(groups)
    first_tier = (
        counts if preferred is None else np.bincount(groups[preferred], minlength=counts.size)
    )
    threshold = np.where(
        first_tier >= n, np.minimum(1.0, 4 * (n + 16) / np.maximum(first_tier, 1)), np.inf
    )
    candidates = np.flatnonzero(keys < threshold[groups])
    short = np.bincount(groups[candidates], minlength=counts.size) < np.minimum(n, counts)
    if short.any():
        threshold[short] = np.inf
        candidates = np.flatnonzero(keys < threshold[groups])
    order = candidates[np.lexsort((keys[candidates], groups[candidates]))]
    sorted_groups = groups[order]
    is_start = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    positions = np.arange(order.size)
    rank = positions - np.maximum.accumulate(np.where(is_start, positions, 0))
    return np.sort(order[rank < n])


def _farthest_per_group(groups: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Position of the largest finite ``distances`` in each group (ties: the first)."""
    finite = np.where(np.isfinite(distances), distances, -1.0)
    order = np.lexsort((-finite, groups))
    sorted_groups = groups[order]
    return order[np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]]


def _disk(radius: int) -> np.ndarray:
    """``(2r+1, 2r+1)`` uint8 footprint of the pixels within Euclidean distance ``radius``."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def _grow_within_regions(
    seeds: np.ndarray, regions: np.ndarray, footprint: np.ndarray
) -> np.ndarray:
    """Dilate each region's seeds by ``footprint``, clipped to that region.

    ``seeds: (H, W)`` bool, ``regions: (H, W)`` int (-1 = outside every region).
    Returns ``(H, W)`` bool.
    One dilation per region that holds a seed, on that region's bounding box only.
    """
    grown = seeds.copy()
    pad = footprint.shape[0] // 2
    bounding_boxes = ndimage.find_objects(regions + 1)  # region r -> its (rows, cols) slices
    for region in np.unique(regions[seeds]):
        rows, cols = bounding_boxes[region]
        window = (
            slice(max(rows.start - pad, 0), rows.stop + pad),
            slice(max(cols.start - pad, 0), cols.stop + pad),
        )
        inside = regions[window] == region
        dilated = cv2.dilate((seeds[window] & inside).astype(np.uint8), footprint).astype(bool)
        grown[window] |= dilated & inside
    return grown


def _distance_to_boundary(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 Euclidean distance of each pixel to the nearest pixel whose 4-neighbour
    has another label (the image border is not a boundary)."""
    boundary = np.zeros(labels.shape, bool)
    vertical = labels[1:, :] != labels[:-1, :]
    horizontal = labels[:, 1:] != labels[:, :-1]
    boundary[1:, :] |= vertical
    boundary[:-1, :] |= vertical
    boundary[:, 1:] |= horizontal
    boundary[:, :-1] |= horizontal
    if not boundary.any():
        return np.full(labels.shape, np.inf, np.float32)
    return cv2.distanceTransform((~boundary).astype(np.uint8), cv2.DIST_L2, 5)


# ------------------------------------------------------------------------------------------ points


def _simulate_points(
    labels: np.ndarray,
    rng: np.random.Generator,
    instance_mask: np.ndarray | None,
    params: dict[str, Any],
) -> np.ndarray:
    """Clicks on labeled pixels, uniformly at random within their group (class or instance)."""
    flat_labels = labels.ravel()
    pixels = np.flatnonzero(flat_labels != IGNORE_INDEX)  # (P,) candidate pixel ids
    classes = flat_labels[pixels]
    keys = rng.random(pixels.size)
    preferred = None
    if params["boundary_margin"] > 0:
        preferred = _distance_to_boundary(labels).ravel()[pixels] >= params["boundary_margin"]

    if params["points_per_instance"] is not None:
        if instance_mask is None:
            raise ConfigError("points_per_instance needs an instance mask (instance_mask=...)")
        instances = instance_mask.ravel()[pixels]
        # One group per (instance, class); pixels outside any instance ("stuff", e.g. background)
        # form one group per class, so that they get the same number of clicks per class.
        _, groups = np.unique(instances * (IGNORE_INDEX + 1) + classes, return_inverse=True)
        groups = groups.ravel()
        chosen = _first_n_per_group(groups, keys, params["points_per_instance"], preferred)
    elif params["points_per_image"] is not None:
        groups = classes
        chosen = np.zeros(0, np.int64)
        if params["cover_all_classes"]:
            chosen = _first_n_per_group(groups, keys, 1, preferred)
        remaining = params["points_per_image"] - chosen.size
        if remaining > 0:
            rest_keys = keys.copy()
            rest_keys[chosen] = np.inf  # already clicked
            if preferred is not None:
                rest_keys[~preferred] += 2.0  # keys are in [0, 1): preferred pixels first
            if remaining < rest_keys.size:  # the `remaining` smallest keys, in O(pixels)
                smallest = np.argpartition(rest_keys, remaining)[:remaining]
            else:
                smallest = np.arange(rest_keys.size)
            chosen = np.union1d(chosen, smallest[np.isfinite(rest_keys[smallest])])
    else:
        groups = classes
        chosen = _first_n_per_group(groups, keys, params["points_per_class"], preferred)

    weak = np.full(labels.size, IGNORE_INDEX, np.uint8)
    weak[pixels[chosen]] = classes[chosen]
    weak = weak.reshape(labels.shape)
    if params["radius"] > 0:
        regions = np.full(labels.size, -1, np.int64)
        regions[pixels] = groups
        clicked = weak != IGNORE_INDEX
        grown = _grow_within_regions(
            clicked, regions.reshape(labels.shape), _disk(params["radius"])
        )
        weak = np.where(grown, labels, IGNORE_INDEX).astype(np.uint8)
    return weak


# --------------------------------------------------------------------------------------- scribbles


def _simulate_scribbles(
    labels: np.ndarray, rng: np.random.Generator, params: dict[str, Any]
) -> np.ndarray:
    """A connected piece of each region's skeleton, ``length_fraction`` of its pixels long.

    Each connected region (8-connectivity, per class) of at least ``min_region_pixels`` pixels gets
    one stroke of ``round(length_fraction * skeleton pixels)`` skeleton pixels: a piece of the
    skeleton's longest path (its main axis) at a random offset, extended by the skeleton pixels
    geodesically nearest to it when the axis is shorter than the target. Any set of skeleton pixels
    sorted by geodesic distance from a connected piece is connected, so the stroke is one piece.
    """
    height, width = labels.shape
    regions = np.full(labels.shape, -1, np.int64)  # region id per pixel, -1 = no scribble there
    skeleton = np.zeros(labels.shape, bool)
    num_regions = 0
    for class_id in np.unique(labels[labels != IGNORE_INDEX]):
        binary = (labels == class_id).astype(np.uint8)
        count, components, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        large = stats[:, cv2.CC_STAT_AREA] >= params["min_region_pixels"]
        large[0] = False  # component 0 is the rest of the image
        if not large.any():
            continue
        region_of = np.full(count, -1, np.int64)
        region_of[large] = num_regions + np.arange(large.sum())
        num_regions += int(large.sum())
        class_regions = region_of[components]
        inside = class_regions >= 0
        regions[inside] = class_regions[inside]
        rows, cols = np.nonzero(inside)
        y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        skeleton[y0:y1, x0:x1] |= skeletonize(inside[y0:y1, x0:x1])

    weak = np.full(labels.shape, IGNORE_INDEX, np.uint8)
    if num_regions == 0:
        return weak

    # A region whose skeleton vanished (should not happen, but cheap to guarantee) gets one pixel.
    missing = np.setdiff1d(np.arange(num_regions), np.unique(regions[skeleton]))
    if missing.size:
        candidates = np.flatnonzero(np.isin(regions.ravel(), missing))
        keys = rng.random(candidates.size)
        picked = candidates[_first_n_per_group(regions.ravel()[candidates], keys, 1)]
        skeleton.ravel()[picked] = True

    # The skeleton as a graph: 8-neighbour skeleton pixels of the same region are linked.
    node_pixels = np.flatnonzero(skeleton)  # (S,)
    node_of = np.full(height * width, -1, np.int64)
    node_of[node_pixels] = np.arange(node_pixels.size)
    node_of = node_of.reshape(labels.shape)
    node_regions = regions.ravel()[node_pixels]
    sources, targets = [], []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a_rows = slice(0, height - dy)
        b_rows = slice(dy, height)
        a_cols = slice(max(-dx, 0), width - max(dx, 0))
        b_cols = slice(max(dx, 0), width - max(-dx, 0))
        linked = (
            skeleton[a_rows, a_cols]
            & skeleton[b_rows, b_cols]
            & (regions[a_rows, a_cols] == regions[b_rows, b_cols])
        )
        sources.append(node_of[a_rows, a_cols][linked])
        targets.append(node_of[b_rows, b_cols][linked])
    sources, targets = np.concatenate(sources), np.concatenate(targets)
    graph = coo_matrix(
        (np.ones(sources.size), (sources, targets)), shape=(node_pixels.size,) * 2
    ).tocsr()

    def geodesic_from(sources: np.ndarray) -> np.ndarray:
        """(S,) hop distance along the skeleton to the nearest of ``sources`` (inf: unreachable)."""
        return dijkstra(graph, directed=False, indices=sources, unweighted=True, min_only=True)

    # Main axis of each region = the skeleton's longest path, found by a double sweep: the node
    # farthest from a random start is one end (a), the node farthest from a is the other (b).
    start_keys = rng.random(node_pixels.size)
    starts = _first_n_per_group(node_regions, start_keys, 1)  # one random start per region
    end_a = _farthest_per_group(node_regions, geodesic_from(starts))
    from_a = geodesic_from(end_a)
    end_b = _farthest_per_group(node_regions, from_a)
    from_b = geodesic_from(end_b)
    axis_length = np.zeros(num_regions)
    axis_length[node_regions[end_b]] = from_a[end_b]  # hops from a to b
    on_axis = from_a + from_b == axis_length[node_regions]  # nodes on a shortest a-b path

    # The stroke: a piece of the main axis of the target length at a random offset; when the
    # target is longer than the axis (branchy skeletons), the skeleton pixels nearest the axis.
    skeleton_length = np.bincount(node_regions, minlength=num_regions)  # pixels per region
    target = np.maximum(1, np.rint(params["length_fraction"] * skeleton_length)).astype(np.int64)
    on_axis_length = np.minimum(target, axis_length + 1)
    offset = np.floor(rng.random(num_regions) * (axis_length + 2 - on_axis_length))
    segment = on_axis & (from_a >= offset[node_regions])
    segment &= from_a < (offset + on_axis_length)[node_regions]
    from_segment = geodesic_from(np.flatnonzero(segment))
    tie_keys = rng.random(node_pixels.size)
    order = np.lexsort((tie_keys, from_a, from_segment, node_regions))
    sorted_regions = node_regions[order]
    is_start = np.r_[True, sorted_regions[1:] != sorted_regions[:-1]]
    positions = np.arange(order.size)
    rank = positions - np.maximum.accumulate(np.where(is_start, positions, 0))
    stroke = node_pixels[order[rank < target[sorted_regions]]]

    stroke_mask = np.zeros(labels.size, bool)
    stroke_mask[stroke] = True
    stroke_mask = stroke_mask.reshape(labels.shape)
    if params["width"] > 1:
        footprint = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (params["width"], params["width"]))
        stroke_mask = _grow_within_regions(stroke_mask, regions, footprint)
    weak[stroke_mask] = labels[stroke_mask]
    return weak


# ------------------------------------------------------------------------------------------ blocks


def _simulate_blocks(
    labels: np.ndarray, rng: np.random.Generator, params: dict[str, Any]
) -> np.ndarray:
    """Keep ``round(fraction * number_of_blocks)`` grid blocks densely labeled, chosen at random.

    The grid starts at the top-left corner; blocks at the right/bottom border may be smaller.
    With ``cover_all_classes`` one random block per class present is kept first (this may exceed
    the fraction when there are more classes than blocks to keep).
    """
    height, width = labels.shape
    size = params["block_size"]
    blocks_y, blocks_x = -(-height // size), -(-width // size)
    num_blocks = blocks_y * blocks_x
    num_keep = max(1, int(round(params["fraction"] * num_blocks)))
    block_of = (np.arange(height)[:, None] // size) * blocks_x + np.arange(width)[None, :] // size

    keys = rng.random(num_blocks)
    kept = np.zeros(num_blocks, bool)
    if params["cover_all_classes"]:
        valid = labels != IGNORE_INDEX
        pairs = np.unique(labels[valid] * num_blocks + block_of[valid])  # (class, block) pairs
        pair_classes, pair_blocks = pairs // num_blocks, pairs % num_blocks
        kept[pair_blocks[_first_n_per_group(pair_classes, keys[pair_blocks], 1)]] = True
    remaining = num_keep - int(kept.sum())
    if remaining > 0:
        order = np.argsort(np.where(kept, np.inf, keys), kind="stable")
        kept[order[:remaining]] = True
    return np.where(kept[block_of], labels, IGNORE_INDEX).astype(np.uint8)


# ------------------------------------------------------------------------------------------- boxes


def boxes_from_mask(
    labels: np.ndarray,
    *,
    instance_mask: np.ndarray | None = None,
    min_box_pixels: int = 16,
    skip_classes: tuple[int, ...] = (),
) -> np.ndarray:
    """Tight boxes ``(M, 5)`` float32 ``[x0, y0, x1, y1, class_id]`` (x1, y1 exclusive).

    With ``instance_mask: (H, W)`` (0 = no instance): one box per instance around its labeled
    pixels, its class the instance's most frequent class in ``labels``. Without one: one box per
    connected component (8-connectivity) of each class, of at least ``min_box_pixels`` pixels.
    Classes in ``skip_classes`` get no box. Boxes are sorted by class, then top-left corner.
    """
    labels = np.asarray(labels)
    valid = labels != IGNORE_INDEX
    if instance_mask is not None:
        boxes = _boxes_from_instances(labels, instance_mask, valid, min_box_pixels)
    else:
        boxes = []
        for class_id in np.unique(labels[valid]):
            binary = (labels == class_id).astype(np.uint8)
            _, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
            stats = stats[1:][stats[1:, cv2.CC_STAT_AREA] >= min_box_pixels]
            x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
            w, h = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
            boxes.append(np.stack([x, y, x + w, y + h, np.full_like(x, class_id)], axis=1))
        boxes = np.concatenate(boxes) if boxes else np.zeros((0, 5))
    boxes = np.asarray(boxes, np.float32).reshape(-1, 5)
    if skip_classes:
        boxes = boxes[~np.isin(boxes[:, 4], skip_classes)]
    order = np.lexsort((boxes[:, 0], boxes[:, 1], boxes[:, 4]))
    return boxes[order]


def _boxes_from_instances(
    labels: np.ndarray, instance_mask: np.ndarray, valid: np.ndarray, min_box_pixels: int
) -> np.ndarray:
    """One box per instance id > 0 (over its non-ignore pixels); see ``boxes_from_mask``."""
    ids = np.where(valid & (instance_mask > 0), instance_mask, 0)
    instance_ids, dense = np.unique(ids, return_inverse=True)
    dense = dense.reshape(labels.shape)  # 0..I-1, and 0 is "no instance" when present
    if instance_ids[0] != 0:
        dense = dense + 1
        instance_ids = np.r_[0, instance_ids]
    num = instance_ids.size - 1
    if num == 0:
        return np.zeros((0, 5), np.float32)
    inside = dense > 0
    counts = np.bincount(
        (dense[inside] - 1) * IGNORE_INDEX + labels[inside], minlength=num * IGNORE_INDEX
    ).reshape(num, IGNORE_INDEX)  # (I, classes) pixel counts
    slices = ndimage.find_objects(dense, max_label=num)
    boxes = np.array(
        [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], np.float32
    ).reshape(num, 4)
    keep = counts.sum(1) >= min_box_pixels
    return np.concatenate([boxes, counts.argmax(1)[:, None].astype(np.float32)], 1)[keep]
