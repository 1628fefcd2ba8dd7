"""L_seg: partial cross-entropy on the weakly-labeled pixels (Eq. 10)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["pixel", "class"]
REDUCTIONS = ("pixel", "class")


def partial_cross_entropy(
    logits: torch.Tensor,
    weak_labels: torch.Tensor,
    *,
    ignore_index: int = 255,
    reduction: Reduction = "pixel",
    pixels: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over labeled pixels; 0 (still attached to the graph) when there are none.

    ``logits``: (B, K, H, W); ``weak_labels``: (B, H, W) class ids, ``ignore_index`` = unlabeled.
    ``reduction``: ``"pixel"`` = mean over labeled pixels (Eq. 10); ``"class"`` = mean over the
    classes labeled in the batch of each class's mean, so a class with few labeled pixels (a pole
    in a dense mask) weighs as much as one with many (the road). Clicks are already balanced.
    ``pixels``: the labeled pixels' ``(b, y, x)`` indices (``(weak_labels != ignore_index)
    .nonzero(as_tuple=True)``), if the caller has them already; ``rows``: their logits (L, K)
    (``logits[b, :, y, x]``), if the caller has gathered them (sparse labels only).

    Sparse labels (under a quarter of the pixels) take the softmax of the labeled pixels' logits
    only, not of every pixel: the same value and gradient, without two full-resolution passes.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    labels = weak_labels.long()
    if pixels is None:
        pixels = (labels != ignore_index).nonzero(as_tuple=True)
    b_idx, y_idx, x_idx = pixels
    if rows is not None or labels_are_sparse(b_idx.numel(), labels.numel()):
        if rows is None:
            rows = gather_pixels(logits, b_idx, y_idx, x_idx)  # (L, K)
        rows = rows.to(torch.promote_types(rows.dtype, torch.float32))  # bf16 -> float32
        per_pixel = F.cross_entropy(rows, labels[b_idx, y_idx, x_idx], reduction="none")
        if reduction == "pixel":
            return per_pixel.sum() / max(per_pixel.numel(), 1)
        return class_balanced_mean(per_pixel, labels[b_idx, y_idx, x_idx], logits.shape[1]) + (
            per_pixel.sum() * 0.0  # attached to the graph when no pixel is labeled
        )
    if reduction == "pixel":
        total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
        return total / max(b_idx.numel(), 1)
    per_pixel = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="none")
    per_class = class_balanced_mean(
        per_pixel[b_idx, y_idx, x_idx], labels[b_idx, y_idx, x_idx], logits.shape[1]
    )
    return per_class + per_pixel.sum() * 0.0


def gather_pixels(
    logits: torch.Tensor, b_idx: torch.Tensor, y_idx: torch.Tensor, x_idx: torch.Tensor
) -> torch.Tensor:
    """``logits[b_idx, :, y_idx, x_idx]``: the (L, K) logits of L pixels of a (B, K, H, W) map.

    One ``index_select`` over a flat view in memory order (channels_last or contiguous), whose
    backward is an ``index_add`` into the zero gradient. Advanced indexing's backward is an
    accumulating ``index_put``, 10-50x slower on CPUs (at K = 150, 128 x 128, B = 8: ~15 ms).
    """
    batch, channels, height, width = logits.shape
    if logits.is_contiguous():
        start = (b_idx * channels * height + y_idx) * width + x_idx  # channel 0 of each pixel
        offsets = torch.arange(channels, device=logits.device) * (height * width)
        index = (start[:, None] + offsets).view(-1)
        return logits.reshape(-1).index_select(0, index).view(-1, channels)
    if logits.is_contiguous(memory_format=torch.channels_last):
        pixel = (b_idx * height + y_idx) * width + x_idx
        return logits.permute(0, 2, 3, 1).reshape(-1, channels).index_select(0, pixel)
    return logits[b_idx, :, y_idx, x_idx]


def labels_are_sparse(num_labeled: int, num_pixels: int) -> bool:
    """Whether L_seg takes the softmax of the labeled pixels only: under a quarter are labeled."""
    return 4 * num_labeled <= num_pixels


def class_balanced_mean(
    values: torch.Tensor,
    classes: torch.Tensor,
    num_classes: int,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The mean over the classes that occur of each class's weighted mean of ``values``.

    ``values``, ``classes`` (ids in [0, num_classes)) and ``weights`` (>= 0, default 1) are 1-D and
    of one length; a class occurs when its weights sum above 0. 0 when none does.
    """
    if weights is None:
        weights = torch.ones_like(values)
    sums = values.new_zeros(num_classes).index_add_(0, classes, values * weights)
    counts = values.new_zeros(num_classes).index_add_(0, classes, weights.to(values.dtype))
    seen = counts > 0
    per_class = sums / counts.clamp_min(1e-12)
    return (per_class * seen).sum() / seen.sum().clamp_min(1).to(sums.dtype)
