"""L_seg: partial cross-entropy on the weakly-labeled pixels (Eq. 10)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def partial_cross_entropy(
    logits: torch.Tensor, weak_labels: torch.Tensor, *, ignore_index: int = 255
) -> torch.Tensor:
    """Mean cross-entropy over labeled pixels; 0 (still attached to the graph) when there are none.

    ``logits``: (B, K, H, W); ``weak_labels``: (B, H, W) class ids, ``ignore_index`` = unlabeled.
    """
    labeled = (weak_labels != ignore_index).sum()
    total = F.cross_entropy(logits, weak_labels.long(), ignore_index=ignore_index, reduction="sum")
    return total / labeled.clamp_min(1).to(total.dtype)
