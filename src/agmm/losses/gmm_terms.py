"""L_self (Eq. 11) and L_weak (Eq. 12): the segmenter and the GMM supervise each other.

Both are binary cross-entropies averaged over (pixel, class) pairs, restricted to the classes that
have a mixture component in the image (``present``, the paper's K_img): a class the image does not
contain has G = 0 by construction and is not used to push P down.
"""

from __future__ import annotations

import torch

from agmm.losses.segmentation import REDUCTIONS, Reduction, class_balanced_mean

# log(p + BCE_EPS): finite where G or P is exactly 0 or 1 (G = 1 at a one-pixel class's own pixel,
# G = 0 for absent classes), and unlike clamping it keeps a gradient there.
BCE_EPS = 1e-6


def binary_cross_entropy(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Element-wise -[t log p + (1 - t) log(1 - p)] for p, t in [0, 1], finite everywhere."""
    return -_bce_log_likelihood(probs, target)


def _bce_log_likelihood(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """t log(p + eps) + (1 - t) log(1 - p + eps), as one ``lerp`` of the two logarithms: five
    passes over the tensors forward and about as many backward, where the written-out sum takes
    nine and eleven (L_self runs it over every (position, class) pair)."""
    dtype = torch.promote_types(probs.dtype, target.dtype)  # lerp wants one dtype
    probs, target = probs.to(dtype), target.to(dtype)
    return torch.lerp(torch.log1p(BCE_EPS - probs), torch.log(probs + BCE_EPS), target)


def self_supervision_loss(
    probs: torch.Tensor,
    gmm_probs: torch.Tensor,
    present: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    reduction: Reduction = "pixel",
) -> torch.Tensor:
    """L_self = BCE(P, G) averaged over pixels and present classes (Eq. 11).

    ``probs``: P (B, K, h, w), softmax of the segmenter; ``gmm_probs``: G (B, K, h, w) on the same
    grid; ``present``: (B, K) bool; ``weights``: (B, h, w) in [0, 1], the share of each position
    that is real image (0 on padding); None = all 1.
    ``reduction``: ``"pixel"`` = the mean over every (pixel, present class) pair, Eq. 11; ``"class"``
    = for each (image, present class), the G-weighted mean of the positive part -log P and the
    (1 - G)-weighted mean of the negative part -log(1 - P), averaged: a class covering 1 % of the
    image then pulls P up as hard as one covering 60 % (the per-pair mean lets the negatives of
    small classes and the large classes dominate).
    Gradients reach both P and G (mutual supervision); detach G beforehand to stop them.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if reduction == "pixel":
        # sum over the positions first, then over the present (image, class) pairs: the mask
        # never takes a pass over the (B, K, h, w) maps
        log_likelihood = _bce_log_likelihood(probs, gmm_probs)
        pairs = present.to(probs.dtype)
        if weights is None:
            per_pair = log_likelihood.sum(dim=(2, 3))
            count = pairs.sum() * (probs.shape[2] * probs.shape[3])
        else:
            weights = weights.to(probs.dtype)
            per_pair = (log_likelihood * weights[:, None]).sum(dim=(2, 3))
            count = (pairs * weights.sum(dim=(1, 2))[:, None]).sum()
        return -(per_pair * pairs).sum() / count.clamp_min(1.0)
    mask = present[:, :, None, None].to(probs.dtype)
    if weights is not None:
        mask = mask * weights[:, None].to(probs.dtype)
    mask = mask.expand_as(probs)
    positive = gmm_probs * mask
    negative = (1.0 - gmm_probs) * mask
    pos_loss = (positive * -torch.log(probs + BCE_EPS)).sum(dim=(2, 3))
    neg_loss = (negative * -torch.log(1.0 - probs + BCE_EPS)).sum(dim=(2, 3))
    pos_mean = pos_loss / positive.sum(dim=(2, 3)).clamp_min(BCE_EPS)
    neg_mean = neg_loss / negative.sum(dim=(2, 3)).clamp_min(BCE_EPS)
    pairs = present.to(probs.dtype)
    return (0.5 * (pos_mean + neg_mean) * pairs).sum() / pairs.sum().clamp_min(1.0)


def confident_cross_entropy(
    probs: torch.Tensor,
    target: torch.Tensor,
    present: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    threshold: float = 0.8,
    reduction: Reduction = "pixel",
) -> torch.Tensor:
    """Hard pseudo-label cross-entropy of P where the target is confident (not in the paper).

    Each position takes the arg-max of ``target`` over the ``present`` classes as its label when
    that maximum is at least ``threshold`` (and above 0); the loss is -log P(label) there.
    ``probs``: P (B, K, h, w); ``target``: (B, K, h, w) in [0, 1] (treated as fixed: no gradient
    reaches it); ``present``: (B, K) bool; ``weights``: (B, h, w) share of real image per position
    (0 on padding), None = 1.
    ``reduction``: ``"pixel"`` = mean over the selected positions; ``"class"`` = mean over the
    pseudo-labeled classes of the batch of each class's mean, so a pole's few confident positions
    weigh as much as the road's many. 0 (attached to P's graph) when no position is confident.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    masked = target.detach() * present[:, :, None, None].to(target.dtype)
    confidence, labels = masked.max(dim=1)  # (B, h, w)
    # A position needs a present class with a non-zero target (threshold 0 selects no position
    # of an image without components).
    selected = ((confidence >= threshold) & (confidence > 0)).to(probs.dtype)
    if weights is not None:
        selected = selected * weights.to(probs.dtype)
    nll = -torch.log(probs.gather(1, labels.unsqueeze(1)).squeeze(1) + BCE_EPS)
    if reduction == "pixel":
        return (nll * selected).sum() / selected.sum().clamp_min(BCE_EPS) + probs.sum() * 0.0
    per_class = class_balanced_mean(
        nll.flatten(), labels.flatten(), probs.shape[1], selected.flatten()
    )
    return per_class + probs.sum() * 0.0


def weak_loss(
    gmm_at_labels: torch.Tensor, labels: torch.Tensor, present_rows: torch.Tensor
) -> torch.Tensor:
    """L_weak = BCE(G, one-hot y) over labeled pixels and present classes (Eq. 12).

    ``gmm_at_labels``: G at the L labeled pixels (L, K); ``labels``: their class ids (L,);
    ``present_rows``: (L, K) bool, the present classes of each pixel's image. 0 when L = 0.
    """
    target = torch.zeros_like(gmm_at_labels)
    target[torch.arange(labels.shape[0], device=labels.device), labels] = 1.0
    bce = binary_cross_entropy(gmm_at_labels, target)
    mask = present_rows.to(bce.dtype)
    return (bce * mask).sum() / mask.sum().clamp_min(1.0)
