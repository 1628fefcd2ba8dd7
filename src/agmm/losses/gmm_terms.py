"""L_self (Eq. 11) and L_weak (Eq. 12): the segmenter and the GMM supervise each other.

Both are binary cross-entropies averaged over (pixel, class) pairs, restricted to the classes that
have a mixture component in the image (``present``, the paper's K_img): a class the image does not
contain has G = 0 by construction and is not used to push P down.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Probabilities are kept inside [_CLAMP, 1 - _CLAMP] before a log: G is exactly 1 at a one-pixel
# class's own pixel and exactly 0 for absent classes.
_CLAMP = 1e-6


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` holds (broadcast); 0, still attached, when nothing does."""
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def self_supervision_loss(
    logits: torch.Tensor,
    gmm_probs: torch.Tensor,
    present: torch.Tensor,
    valid_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_self = BCE(P, G) over valid pixels and present classes (Eq. 11).

    ``logits``: (B, K, H, W) of the segmenter, P = softmax(logits); ``gmm_probs``: G (B, K, H, W);
    ``present``: (B, K) bool; ``valid_mask``: (B, H, W) bool, False on padding.
    Gradients reach both P and G (mutual supervision); detach G beforehand to stop them.
    """
    log_p = F.log_softmax(logits, dim=1)
    p = log_p.exp().clamp(max=1.0 - _CLAMP)
    target = gmm_probs.clamp(0.0, 1.0)
    bce = -(target * log_p.clamp_min(math.log(_CLAMP)) + (1 - target) * torch.log1p(-p))
    mask = present[:, :, None, None]
    if valid_mask is not None:
        mask = mask & valid_mask[:, None]
    return _masked_mean(bce, mask)


def weak_loss(
    gmm_probs: torch.Tensor,
    weak_labels: torch.Tensor,
    present: torch.Tensor,
    *,
    ignore_index: int = 255,
) -> torch.Tensor:
    """L_weak = BCE(G, one-hot y) on labeled pixels and present classes (Eq. 12).

    ``gmm_probs``: G (B, K, H, W); ``weak_labels``: (B, H, W); ``present``: (B, K) bool.
    """
    num_classes = gmm_probs.shape[1]
    labeled = weak_labels != ignore_index
    target = F.one_hot(weak_labels.long().masked_fill(~labeled, 0), num_classes)
    target = target.permute(0, 3, 1, 2).to(gmm_probs.dtype)
    g = gmm_probs.clamp(_CLAMP, 1.0 - _CLAMP)
    bce = -(target * torch.log(g) + (1 - target) * torch.log1p(-g))
    return _masked_mean(bce, present[:, :, None, None] & labeled[:, None])
