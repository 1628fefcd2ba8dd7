"""L_con: pull pixels to their own Gaussian, push them from the others (Eq. 14; Eq. 13 as `con_old`)."""

from __future__ import annotations

import torch


def contrastive_loss(
    sq_dist: torch.Tensor,
    label_weights: torch.Tensor,
    present: torch.Tensor,
    *,
    sq_dist_rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 14: mean over positive pairs of 1 - exp(-d^2) + mean over negative pairs of exp(-d^2).

    ``sq_dist``: d^2 (B, K, N) of every position to every centre; ``label_weights``: (B, K, N) mass of
    class-k labeled pixels in each position (positives: a labeled pixel and its own centre; negatives:
    the same pixel and every other present centre of its image); ``present``: (B, K) bool;
    ``sq_dist_rows``: ``sq_dist`` as (B N, K) rows (``functional.position_rows``), if at hand.
    """
    # Only the positions that hold a labeled pixel count: gather their rows, (L, K).
    index, weights, present_rows = contrastive_positions(label_weights, present, sq_dist.dtype)
    if sq_dist_rows is None:
        sq_dist_rows = sq_dist.transpose(1, 2).reshape(-1, sq_dist.shape[1])
    return contrastive_at_rows(sq_dist_rows.index_select(0, index), weights, present_rows)


def contrastive_positions(
    label_weights: torch.Tensor, present: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The positions L_con counts, those that hold a labeled pixel: their flat indices
    ``b N + n`` (L,), their label weights (L, K) and their images' present classes (L, K) in
    ``dtype``."""
    batch_idx, cell_idx = (label_weights.sum(dim=1) > 0).nonzero(as_tuple=True)
    weights = label_weights[batch_idx, :, cell_idx]
    present_rows = present[batch_idx].to(dtype)
    return batch_idx * label_weights.shape[2] + cell_idx, weights, present_rows


def contrastive_at_rows(
    labeled: torch.Tensor, weights: torch.Tensor, present_rows: torch.Tensor
) -> torch.Tensor:
    """Eq. 14 from d^2 at the positions of :func:`contrastive_positions` (L, K), as one node."""
    return _ContrastiveRows.apply(labeled, weights, present_rows)


class _ContrastiveRows(torch.autograd.Function):
    """Eq. 14 on the gathered rows as one autograd node: ``(labeled (L, K), weights (L, K),
    present_rows (L, K)) -> loss``. With s = exp(-d^2) on present centres, w the label
    weights, W = sum w, w_l = sum_k w_lk and n the negative pairs' weight:
    loss = sum w (1 - s) / W + sum_l (w_l sum_k s_lk - sum_k w_lk s_lk) / n, so
    dloss / dd^2_lk = s_lk (w_lk / W - (w_l - w_lk) / n)."""

    @staticmethod
    def forward(ctx, labeled, weights, present_rows):
        similarity = torch.exp(-labeled).mul_(present_rows)  # 0 for absent centres
        mass = weights.sum()
        total = mass.clamp_min(1e-8)
        per_pixel = weights.sum(dim=1)  # (L,)
        own = (weights * similarity).sum()
        # Negatives of a class-k pixel: every present centre j != k (the row sum minus itself).
        other_centres = (present_rows.sum(dim=1) - 1).clamp_min(0)  # (L,)
        count = (per_pixel * other_centres).sum().clamp_min(1e-8)
        negative = (per_pixel * similarity.sum(dim=1)).sum() - own
        ctx.save_for_backward(weights, similarity, per_pixel, total, count)
        return (mass - own) / total + negative / count

    @staticmethod
    def backward(ctx, grad):
        weights, similarity, per_pixel, total, count = ctx.saved_tensors
        # d loss / d s, then d s / d d^2 = -s
        grad_sim = (per_pixel.unsqueeze(1) - weights) / count - weights / total
        return grad_sim.mul_(similarity).mul_(-grad), None, None


def centre_contrastive_loss(centre_sq_dist: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Eq. 13 (AGMM, CVPR'23): 2 / (K (K + 1)) * sum_{i != j} exp(-d^2(mu_i, mu_j)), mean over images.

    ``centre_sq_dist``: (B, K, K); ``present``: (B, K) bool; K in the normaliser is the number of
    present classes of each image. Images without classes do not count in the mean.
    """
    pair = present.unsqueeze(2) & present.unsqueeze(1)
    pair = pair & ~torch.eye(present.shape[1], dtype=torch.bool, device=present.device)
    per_image = (torch.exp(-centre_sq_dist) * pair.to(centre_sq_dist.dtype)).sum(dim=(1, 2))
    count = present.sum(dim=1).to(centre_sq_dist.dtype)
    per_image = per_image * 2.0 / (count * (count + 1.0)).clamp_min(1.0)
    has_classes = (count > 0).to(per_image.dtype)
    return (per_image * has_classes).sum() / has_classes.sum().clamp_min(1.0)
