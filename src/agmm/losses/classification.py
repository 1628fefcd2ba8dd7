"""L_cls: multi-label classification of image tags (Eq. 17), the loss behind online CAMs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_loss(cls_logits: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """Multi-label soft-margin loss. ``cls_logits``: (B, K); ``tags``: (B, K) multi-hot."""
    return F.multilabel_soft_margin_loss(cls_logits, tags.to(cls_logits.dtype))
