"""Boxes -> seeds: GrabCut (OpenCV) inside each box, or the box interior shrunk by a margin.

Rules (DESIGN.md): inside a box, GrabCut's definite and probable foreground get the box's class and
everything else in the box is ignored (255); outside every box is background (0) when the dataset has
one, else ignored; where boxes overlap the smaller box decides (its pixels overwrite the larger
box's). Seeds never leave their box.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from agmm.errors import LabelError
from agmm.runtime.constants import IGNORE_INDEX

METHODS = ("grabcut", "shrink")


def validate_boxes(
    boxes: np.ndarray,
    *,
    image_size: tuple[int, int],
    num_classes: int,
    has_background: bool,
    source: str | Path = "<boxes>",
    tolerance: float = 1.0,
) -> np.ndarray:
    """Check boxes (M, 5) ``[x0, y0, x1, y1, class_id]`` (pixels) against the image and classes.

    Returns the boxes as float64, clipped to the image when they overshoot by at most ``tolerance``
    pixels (rounding of 1-based annotations). Raises LabelError naming ``source`` for a class outside
    ``0..K-1`` (or the background class), a box outside the image, or a box of zero area.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    height, width = image_size
    if not np.isfinite(boxes).all():
        raise LabelError(f"{source}: box coordinates must be finite numbers")
    class_ids = boxes[:, 4]
    lowest = 1 if has_background else 0
    bad_class = (
        (class_ids != np.round(class_ids)) | (class_ids < lowest) | (class_ids >= num_classes)
    )
    if bad_class.any():
        index = int(np.argmax(bad_class))
        raise LabelError(
            f"{source}: box {index} has class {class_ids[index]:g} but the dataset's box classes are "
            f"{lowest}..{num_classes - 1}" + (" (0 is the background)" if has_background else "")
        )
    limits = np.array([width, height, width, height], dtype=np.float64)
    outside = (boxes[:, :4] < -tolerance).any(axis=1) | (boxes[:, :4] > limits + tolerance).any(
        axis=1
    )
    if outside.any():
        index = int(np.argmax(outside))
        raise LabelError(
            f"{source}: box {index} {boxes[index, :4].tolist()} lies outside the {width}x{height} image"
        )
    boxes[:, :4] = np.clip(boxes[:, :4], 0, limits)
    empty = (boxes[:, 2] - boxes[:, 0] <= 0) | (boxes[:, 3] - boxes[:, 1] <= 0)
    if empty.any():
        index = int(np.argmax(empty))
        raise LabelError(
            f"{source}: box {index} {boxes[index, :4].tolist()} has zero area (need x0 < x1, y0 < y1)"
        )
    return boxes


def box_pixels(box: np.ndarray) -> tuple[int, int, int, int]:
    """Integer pixel extent (x0, y0, x1, y1), x1/y1 exclusive, of the pixels a box touches."""
    x0, y0 = math.floor(box[0]), math.floor(box[1])
    x1, y1 = max(math.ceil(box[2]), x0 + 1), max(math.ceil(box[3]), y0 + 1)
    return x0, y0, x1, y1


def grabcut_box(
    image: np.ndarray,
    box: np.ndarray,
    *,
    iterations: int = 5,
    context: float | None = 1.0,
    min_foreground: float = 0.1,
    max_pixels: int | None = 40_000,
) -> np.ndarray | None:
    """GrabCut foreground (definite + probable) of one box. image (H, W, 3) uint8 -> (H, W) bool.

    The image around the box seeds the background colour model: the box enlarged by ``context``
    times its width/height on each side (clipped to the image), or the whole image when ``context``
    is None. Returns None when GrabCut cannot run (the box fills that region, leaving no background;
    OpenCV fails on a tiny box) or finds less than ``min_foreground`` of the box. A region larger
    than ``max_pixels`` is downscaled for GrabCut and its mask upscaled back (nearest): GrabCut's
    cost grows with the region, and large boxes need no pixel-exact colour models.
    """
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box_pixels(box)
    if context is None:
        cx0, cy0, cx1, cy1 = 0, 0, width, height
    else:
        dx, dy = math.ceil(context * (x1 - x0)), math.ceil(context * (y1 - y0))
        cx0, cy0 = max(0, x0 - dx), max(0, y0 - dy)
        cx1, cy1 = min(width, x1 + dx), min(height, y1 + dy)
    if x1 - x0 < 2 or y1 - y0 < 2 or (x1 - x0) * (y1 - y0) >= (cx1 - cx0) * (cy1 - cy0):
        return None
    region = np.ascontiguousarray(image[cy0:cy1, cx0:cx1, ::-1])  # OpenCV expects BGR
    rect = np.array([x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0], np.float64)  # in the region
    region_hw = region.shape[:2]
    scale = 1.0
    if max_pixels and region_hw[0] * region_hw[1] > max_pixels:
        scale = math.sqrt(max_pixels / (region_hw[0] * region_hw[1]))
        small_hw = (max(2, round(region_hw[0] * scale)), max(2, round(region_hw[1] * scale)))
        region = cv2.resize(region, small_hw[::-1], interpolation=cv2.INTER_AREA)
        rect = rect * np.array([small_hw[1] / region_hw[1], small_hw[0] / region_hw[0]] * 2)
    rx0, ry0 = int(math.floor(rect[0])), int(math.floor(rect[1]))
    rx1 = min(max(int(math.ceil(rect[2])), rx0 + 1), region.shape[1])
    ry1 = min(max(int(math.ceil(rect[3])), ry0 + 1), region.shape[0])
    if (
        rx1 - rx0 < 2
        or ry1 - ry0 < 2
        or (rx1 - rx0) * (ry1 - ry0) >= region.shape[0] * region.shape[1]
    ):
        return None
    mask = np.zeros(region.shape[:2], np.uint8)
    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means initialisation: same seeds on every run
    try:
        cv2.grabCut(
            region,
            mask,
            (rx0, ry0, rx1 - rx0, ry1 - ry0),
            background_model,
            foreground_model,
            iterations,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error:
        return None
    if scale != 1.0:
        mask = cv2.resize(mask, region_hw[::-1], interpolation=cv2.INTER_NEAREST)
    inside = mask[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
    box_foreground = (inside == cv2.GC_FGD) | (inside == cv2.GC_PR_FGD)
    if box_foreground.mean() < min_foreground:
        return None
    foreground = np.zeros((height, width), bool)
    foreground[y0:y1, x0:x1] = box_foreground
    return foreground


def shrink_box(image_size: tuple[int, int], box: np.ndarray, *, margin: float = 0.15) -> np.ndarray:
    """The box shrunk by ``margin`` of its width/height on every side. Returns (H, W) bool."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    inner = box_pixels(np.array([x0 + dx, y0 + dy, x1 - dx, y1 - dy]))
    foreground = np.zeros(image_size, bool)
    foreground[inner[1] : inner[3], inner[0] : inner[2]] = True
    return foreground


def grabcut_seeds(
    image: np.ndarray,
    boxes: np.ndarray,
    *,
    has_background: bool,
    num_classes: int | None = None,
    iterations: int = 5,
    ignore_index: int = IGNORE_INDEX,
    method: str = "grabcut",
    shrink_margin: float = 0.15,
    context: float | None = 1.0,
    min_foreground: float = 0.1,
    max_pixels: int | None = 40_000,
    source: str | Path = "<boxes>",
) -> np.ndarray:
    """Seeds (H, W) uint8 from an image (H, W, 3) uint8 and its boxes (M, 5) ``[x0, y0, x1, y1, c]``.

    ``method="grabcut"`` runs GrabCut per box on the box plus ``context`` times its size around it
    (None: the whole image), falling back to ``"shrink"`` for a box GrabCut cannot handle or where it
    finds less than ``min_foreground`` of the box; ``method="shrink"`` seeds the box interior shrunk
    by ``shrink_margin`` and ignores the rim. Boxes are validated first (``num_classes`` defaults to max class + 1); errors name ``source``.
    """
    if method not in METHODS:
        raise ValueError(f"box seed method must be one of {METHODS}, got {method!r}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"{source}: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}"
        )
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    if num_classes is None:
        num_classes = int(boxes[:, 4].max()) + 1 if len(boxes) else 1
    boxes = validate_boxes(
        boxes,
        image_size=(height, width),
        num_classes=num_classes,
        has_background=has_background,
        source=source,
    )
    seeds = np.full((height, width), 0 if has_background else ignore_index, np.uint8)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for index in np.argsort(-areas, kind="stable"):  # largest first: smaller boxes overwrite
        box = boxes[index]
        foreground = None
        if method == "grabcut":
            foreground = grabcut_box(
                image,
                box,
                iterations=iterations,
                context=context,
                min_foreground=min_foreground,
                max_pixels=max_pixels,
            )
        if foreground is None:
            foreground = shrink_box((height, width), box, margin=shrink_margin)
        x0, y0, x1, y1 = box_pixels(box)
        seeds[y0:y1, x0:x1] = np.where(
            foreground[y0:y1, x0:x1], np.uint8(box[4]), np.uint8(ignore_index)
        )
    return seeds
