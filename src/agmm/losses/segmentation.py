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
) -> torch.Tensor:
    """Cross-entropy over labeled pixels; 0 (still attached to the graph) when there are none.

    ``logits``: (B, K, H, W); ``weak_labels``: (B, H, W) class ids, ``ignore_index`` = unlabeled.
    ``reduction``: ``"pixel"`` = mean over labeled pixels (Eq. 10); ``"class"`` = mean over the
    classes labeled in the batch of each class's mean, so a class with few labeled pixels (a pole
    in a dense mask) weighs as much as one with many (the road). Clicks are already balanced.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    labels = weak_labels.long()
    if reduction == "pixel":
        labeled = (labels != ignore_index).sum()
        total = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")
        return total / labeled.clamp_min(1).to(total.dtype)
    per_pixel = F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="none")
    labeled = labels != ignore_index
    per_class = class_balanced_mean(per_pixel[labeled], labels[labeled], logits.shape[1])
    return per_class + per_pixel.sum() * 0.0


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
