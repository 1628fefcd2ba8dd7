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
    batch_idx, cell_idx = (label_weights.sum(dim=1) > 0).nonzero(as_tuple=True)
    weights = label_weights[batch_idx, :, cell_idx]
    present_rows = present[batch_idx].to(sq_dist.dtype)
    if sq_dist_rows is None:
        sq_dist_rows = sq_dist.transpose(1, 2).reshape(-1, sq_dist.shape[1])
    labeled = sq_dist_rows.index_select(0, batch_idx * sq_dist.shape[2] + cell_idx)
    similarity = torch.exp(-labeled) * present_rows  # 0 for absent centres
    positive_sum = (weights * (1.0 - similarity)).sum()
    # Negatives of a class-k pixel: every present centre j != k, i.e. the row sum minus itself.
    others = similarity.sum(dim=1, keepdim=True) - similarity  # (L, K)
    negative_sum = (weights * others).sum()
    other_centres = (present_rows.sum(dim=1) - 1).clamp_min(0)  # (L,)
    negative_count = (weights.sum(dim=1) * other_centres).sum()
    return positive_sum / weights.sum().clamp_min(1e-8) + negative_sum / negative_count.clamp_min(
        1e-8
    )


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
