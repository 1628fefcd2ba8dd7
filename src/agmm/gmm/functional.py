"""The AGMM++ Gaussian mixture (Eq. 1-9, 18) as pure functions on batched tensors.

Shapes: ``B`` images, ``K`` classes of the dataset, ``C`` feature channels, ``N = h * w`` feature
positions. Every class of the dataset has a slot; ``present`` (B, K) says which classes have a
mixture component in each image (the paper's K_img). Absent slots get G = 0 and carry no gradient.

Nothing here loops over classes or pixels: centres are weighted means (one ``bmm``), distances
are one ``bmm`` (``sqeuclid``) or one ``cdist`` (``l1``), and labels are pooled with one
``bincount``.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from agmm.losses.gmm_terms import BCE_EPS

Distance = Literal["l1", "sqeuclid"]
DISTANCES = ("l1", "sqeuclid")

# Denominators of weighted means never drop below this (a class with no weight gets mu = 0 and is
# masked out by ``present``; the floor only keeps the arithmetic finite).
_EPS = 1e-8


class GMMParams(NamedTuple):
    """One fitted mixture: ``mu`` (B, K, C), ``sigma`` (B, K), ``probs`` G (B, K, N) in [0, 1]."""

    mu: torch.Tensor
    sigma: torch.Tensor
    probs: torch.Tensor
    sq_dist: torch.Tensor  # d^2 (B, K, N) of every position to every centre
    present: torch.Tensor | None = None  # (B, K) the classes that have a component


class ClassPrior(NamedTuple):
    """Dataset-level class statistics in the GMM's feature space (not in the paper).

    ``mu`` (K, C) running class centres, ``variance`` (K,) running class variances, ``seen``
    (K,) bool: whether a class has been labeled at least once. See :func:`add_prior_components`.
    """

    mu: torch.Tensor
    variance: torch.Tensor
    seen: torch.Tensor


def pool_labels(
    weak_labels: torch.Tensor,
    num_classes: int,
    feature_size: tuple[int, int],
    *,
    ignore_index: int = 255,
    dtype: torch.dtype | None = None,
    pixels: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Area-pool weak labels (B, H, W) onto the feature grid: returns weights (B, K, h*w).

    ``weights[b, k, n]`` is the fraction of feature cell ``n`` covered by pixels labeled ``k``.
    Every labeled pixel adds to the cell that contains it, so a single clicked pixel still gives its
    cell a non-zero weight and therefore moves its class centre (no pixel is lost to striding).
    Works for any H/h ratio, integer or not. ``pixels``: the labeled pixels' ``(b, y, x)``
    indices, if the caller has them already.
    """
    batch, height, width = weak_labels.shape
    cells_h, cells_w = feature_size
    if pixels is None:
        pixels = (weak_labels != ignore_index).nonzero(as_tuple=True)
    b_idx, y_idx, x_idx = pixels
    class_idx = weak_labels[b_idx, y_idx, x_idx].long()
    # Pixel (y, x) lies in cell (floor(y * h / H), floor(x * w / W)): the same tiling that
    # area interpolation and strided convolutions use.
    cell_y = torch.div(y_idx * cells_h, height, rounding_mode="floor")
    cell_x = torch.div(x_idx * cells_w, width, rounding_mode="floor")
    flat = ((b_idx * num_classes + class_idx) * cells_h + cell_y) * cells_w + cell_x
    cell_area = (height * width) / (cells_h * cells_w)
    dtype = dtype or torch.get_default_dtype()
    size = batch * num_classes * cells_h * cells_w
    if flat.device.type == "cpu" and flat.numel() > 0:
        # each pixel adds 1 / cell_area, counted straight in the weights' dtype: ~30x cheaper
        # than integer counts, a conversion and a division over the whole (B, K, N) map. Not on
        # GPUs, where a weighted bincount is non-deterministic (float atomics), nor on an empty
        # input, which it rejects.
        share = torch.full(flat.shape, 1.0 / cell_area, dtype=dtype)
        weights = torch.bincount(flat, weights=share, minlength=size)
    else:
        weights = torch.bincount(flat, minlength=size).to(dtype) / cell_area
    return weights.view(batch, num_classes, cells_h * cells_w)


def pool_valid_mask(
    valid_mask: torch.Tensor, feature_size: tuple[int, int], *, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Fraction of each feature cell that is real image (not padding): (B, H, W) -> (B, h*w)."""
    # Valid pixels become "class 0" and padding the ignore value, then pool like labels.
    as_labels = (~valid_mask).long()
    return pool_labels(as_labels, 1, feature_size, ignore_index=1, dtype=dtype)[:, 0]


def squared_distance(feats: torch.Tensor, mu: torch.Tensor, kind: Distance = "l1") -> torch.Tensor:
    """Channel-averaged distance d^2 between positions and centres (Eq. 3): returns (B, K, N).

    ``feats``: (B, C, N); ``mu``: (B, K, C).

    - ``l1``: d = mean_c |f_c - mu_c| (what the authors' CVPR'23 code computes), returned squared.
    - ``sqeuclid``: d^2 = mean_c (f_c - mu_c)^2, i.e. d is the root-mean-square difference.
    """
    channels = feats.shape[1]
    if kind == "sqeuclid":
        # Expand (f - mu)^2 = f^2 - 2 f.mu + mu^2 so that no (B, K, C, N) tensor is ever built;
        # the product and the f^2 term are one baddbmm. The 1 / C and -2 / C factors go onto the
        # small tensors: scaling the product inside baddbmm costs its backward a pass over the
        # (B, N, C) and (B, N, K) gradients. relu = clamp at 0 (rounding), with a one-pass backward.
        feat_sq = _SquaredNorm.apply(feats) / channels  # (B, 1, N)
        mu_sq = mu.pow(2).sum(dim=2, keepdim=True) / channels  # (B, K, 1)
        mu_scaled = mu * (-2.0 / channels)
        if feats.stride(1) == 1 and feats.stride(2) != 1:
            # Channels innermost (the squeeze's output): computed position-major, (B, N, K), so
            # that the product's gradient lands in the features' own layout; summing gradients
            # of two layouts costs more than the copy back to (B, K, N) (docs/training.md "Speed").
            rows = torch.baddbmm(
                feat_sq.transpose(1, 2), feats.transpose(1, 2), mu_scaled.transpose(1, 2)
            )
            return (rows + mu_sq.transpose(1, 2)).relu().transpose(1, 2).contiguous()
        return (torch.baddbmm(mu_sq, mu_scaled, feats) + feat_sq).relu()
    if kind == "l1":
        # cdist sums |f - mu| over channels without materialising the (B, N, K, C) differences.
        dist = torch.cdist(feats.transpose(1, 2), mu, p=1.0)  # (B, N, K)
        return (dist / channels).pow(2).transpose(1, 2)
    raise ValueError(f"distance must be one of {DISTANCES}, got {kind!r}")


class _SquaredNorm(torch.autograd.Function):
    """sum_c f_c^2 of (B, C, N) features: (B, 1, N). Its backward is one pass, 2 f g; autograd's
    for ``f.pow(2).sum(1)`` takes three over the (B, C, N) features."""

    @staticmethod
    def forward(ctx, feats: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(feats)
        return feats.pow(2).sum(dim=1, keepdim=True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (feats,) = ctx.saved_tensors
        return feats * (2.0 * grad)


class _SqEuclidMoments(torch.autograd.Function):
    """The weighted moments of a fit with the ``sqeuclid`` distance, as one autograd node:
    ``(rows (B, N, C), resp (B, K, N)) -> (mu (B, K, C), d^2 (B, K, N), mass (B, K),
    scatter (B, K))`` with mass_k = sum_n r_kn, mu_k = sum_n r_kn f_n / mass_k (floored at
    ``_EPS``), d^2 as :func:`squared_distance` and scatter_k = sum_n r_kn d^2_kn.

    The same values as those four written out with autograd, whose backward takes ~30 nodes
    and sums the features' gradient from four paths. This backward is the chain rule by hand:
    with D = dL/dd^2 + dL/dscatter r (zero where d^2 was clamped at 0),
    dL/df_n = 2/C f_n sum_k D_kn - 2/C sum_k D_kn mu_k + sum_k r_kn g_k / mass_k, and
    g = dL/dmu + 2/C (mu sum_n D_kn - sum_n D_kn f_n), two products accumulated in place.
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, resp: torch.Tensor):
        channels = rows.shape[2]
        mass = resp.sum(dim=2)
        safe_mass = mass.clamp_min(_EPS)
        mu = torch.bmm(resp, rows).div_(safe_mass.unsqueeze(2))
        # |f|^2 as a norm: one read of the features, where pow + sum writes and reads a copy
        feat_sq = torch.linalg.vector_norm(rows, dim=2).square_().div_(channels)  # (B, N)
        mu_sq = mu.pow(2).sum(dim=2, keepdim=True).div_(channels)  # (B, K, 1)
        sq_dist = torch.baddbmm(mu_sq, mu, rows.transpose(1, 2), alpha=-2.0 / channels)
        sq_dist.add_(feat_sq.unsqueeze(1)).clamp_(min=0.0)  # rounding can go below 0
        scatter = (resp * sq_dist).sum(dim=2)
        ctx.save_for_backward(rows, resp, mu, sq_dist, safe_mass, mass >= _EPS)
        # whether any d^2 sits at 0 (its gradient is masked): one read here saves two passes
        # backward when none does, as usual; GPUs keep the mask (no host sync)
        on_cpu = sq_dist.device.type == "cpu" and sq_dist.numel() > 0
        ctx.at_zero = not on_cpu or bool(sq_dist.amin() <= 0)
        return mu, sq_dist, mass, scatter

    @staticmethod
    def backward(ctx, grad_mu, grad_sq_dist, grad_mass, grad_scatter):
        rows, resp, mu, sq_dist, safe_mass, unfloored = ctx.saved_tensors
        scale = 2.0 / rows.shape[2]
        grad_d = grad_sq_dist if grad_sq_dist is not None else torch.zeros_like(sq_dist)
        if grad_scatter is not None:
            grad_d = torch.addcmul(grad_d, resp, grad_scatter.unsqueeze(2))
        if ctx.at_zero:  # relu's gradient: none where clamped
            grad_d = grad_d.masked_fill(sq_dist <= 0, 0.0)
        # through mu_k in d^2: 2/C (mu_k sum_n D_kn - sum_n D_kn f_n)
        grad_centre = torch.baddbmm(
            mu * grad_d.sum(dim=2, keepdim=True), grad_d, rows, beta=scale, alpha=-scale
        )
        if grad_mu is not None:
            grad_centre = grad_centre + grad_mu
        grad_centre = grad_centre / safe_mass.unsqueeze(2)  # (B, K, C): through the mean
        grad_rows = None
        if ctx.needs_input_grad[0]:
            grad_rows = rows * (scale * grad_d.sum(dim=1)).unsqueeze(2)  # |f|^2 term
            grad_rows.baddbmm_(grad_d.transpose(1, 2), mu, alpha=-scale)  # f . mu term
            grad_rows.baddbmm_(resp.transpose(1, 2), grad_centre)  # mu = sum_n r_kn f_n / m_k
        grad_resp = None
        if ctx.needs_input_grad[1]:
            # d mu_k / d r_kn = (f_n - mu_k) / m_k; f_n / _EPS where the mass is floored
            grad_resp = torch.bmm(grad_centre, rows.transpose(1, 2))
            grad_resp -= ((grad_centre * mu).sum(dim=2) * unfloored).unsqueeze(2)
            if grad_scatter is not None:
                grad_resp.addcmul_(sq_dist, grad_scatter.unsqueeze(2))
            if grad_mass is not None:
                grad_resp += grad_mass.unsqueeze(2)
        return grad_rows, grad_resp


def fit_components(
    feats: torch.Tensor,
    responsibilities: torch.Tensor,
    present: torch.Tensor,
    *,
    distance: Distance = "l1",
    sigma_floor: float = 0.05,
    posterior: bool = False,
    prior_mass: float = 0.0,
) -> GMMParams:
    """Fit centres and spreads from responsibilities, then predict G (Eq. 1-4 and 5-8).

    ``feats``: (B, C, N); ``responsibilities``: (B, K, N) >= 0 (weak-label weights for the E-step,
    G_old for the M-step); ``present``: (B, K) bool.

    mu_k = sum_n r_kn f_n / sum_n r_kn (Eq. 1, 5); sigma_k = sqrt(sum_n r_kn d_kn^2 / sum_n r_kn)
    floored at ``sigma_floor`` (Eq. 2, 6), so that a one-pixel class cannot divide by zero.
    ``posterior=True`` returns the normalised responsibilities of :func:`gmm_posteriors` as G.

    ``prior_mass`` > 0 (not in the paper) shrinks every variance toward the image's pooled one,
    v_pool = sum_k sum_n r_kn d_kn^2 / sum_k sum_n r_kn over its present classes, as a conjugate
    prior worth ``prior_mass`` units of responsibility would:
    sigma_k^2 = (m_k v_k + prior_mass v_pool) / (m_k + prior_mass). A class seen at three clicks
    then gets a spread close to what all the image's labeled pixels say, not three pixels' noise.
    """
    if distance == "sqeuclid":
        # one autograd node with a hand-written backward (see _SqEuclidMoments)
        mu, sq_dist, mass, scatter = _SqEuclidMoments.apply(feats.transpose(1, 2), responsibilities)
    else:
        mass = responsibilities.sum(dim=2)  # (B, K)
        safe_mass = mass.clamp_min(_EPS)
        # (B, K, C)
        mu = torch.bmm(responsibilities, feats.transpose(1, 2)) / safe_mass.unsqueeze(2)
        sq_dist = squared_distance(feats, mu, distance)  # (B, K, N)
        scatter = (responsibilities * sq_dist).sum(dim=2)  # (B, K): m_k v_k
    sigma = _Spread.apply(mass, scatter, present.to(scatter.dtype), prior_mass, sigma_floor**2)
    if posterior:
        probs = gmm_posteriors(sq_dist, sigma, present)
    else:
        probs = gmm_probabilities(sq_dist, sigma, present)
    return GMMParams(mu=mu, sigma=sigma, probs=probs, sq_dist=sq_dist, present=present)


class _Spread(torch.autograd.Function):
    """sigma (B, K) from a fit's mass m and scatter s = sum_n r d^2 (B, K), as one autograd node:
    v = s / max(m, eps), or with a prior worth ``prior_mass`` = a units of responsibility,
    v = (s + a V) / (m + a) for the image's pooled variance V = S / M, S = sum_k kept s,
    M = max(sum_k kept m, eps); sigma = sqrt(max(v, floor^2)). The dozen small ops of each
    direction in one node (their autograd bookkeeping cost more than the arithmetic)."""

    @staticmethod
    def forward(ctx, mass, scatter, kept, prior_mass, floor_sq):
        if prior_mass > 0:
            pooled_mass = (mass * kept).sum(dim=1, keepdim=True)
            total = pooled_mass.clamp_min(_EPS)
            pooled = (scatter * kept).sum(dim=1, keepdim=True) / total  # V, (B, 1)
            denominator = mass + prior_mass
            variance = (scatter + prior_mass * pooled) / denominator
            ctx.save_for_backward(kept, pooled, total, pooled_mass >= _EPS, denominator)
        else:
            denominator = mass.clamp_min(_EPS)
            variance = scatter / denominator
            ctx.save_for_backward(mass >= _EPS, denominator)
        sigma = variance.clamp_min(floor_sq).sqrt_()
        ctx.prior_mass = prior_mass
        ctx.saved = (variance, sigma, variance >= floor_sq)
        return sigma

    @staticmethod
    def backward(ctx, grad_sigma):
        variance, sigma, unfloored = ctx.saved
        grad_var = (0.5 * grad_sigma / sigma) * unfloored  # (B, K)
        if ctx.prior_mass > 0:
            kept, pooled, total, unclamped, denominator = ctx.saved_tensors
            grad_scatter = grad_var / denominator
            grad_mass = -grad_scatter * variance
            # through V: dv_k/dV = a / (m_k + a); dV/ds_j = kept_j / M, dV/dm_j = -V kept_j / M
            grad_pooled = (grad_scatter * ctx.prior_mass).sum(dim=1, keepdim=True) / total
            grad_scatter = grad_scatter + grad_pooled * kept
            grad_mass = grad_mass - (grad_pooled * pooled * unclamped) * kept
        else:
            unclamped, denominator = ctx.saved_tensors
            grad_scatter = grad_var / denominator
            grad_mass = -grad_scatter * variance * unclamped
        return grad_mass, grad_scatter, None, None, None


def gmm_probabilities(
    sq_dist: torch.Tensor, sigma: torch.Tensor, present: torch.Tensor
) -> torch.Tensor:
    """G_k(x) = exp(-d^2 / (2 sigma_k^2)) for present classes, 0 otherwise (Eq. 4, 8): (B, K, N).

    The 1/sqrt(2 pi sigma^2) factor is dropped, as in the paper, so that G is in [0, 1].
    """
    return torch.exp(log_gaussians(sq_dist, sigma, present))


def gmm_posteriors(
    sq_dist: torch.Tensor, sigma: torch.Tensor, present: torch.Tensor
) -> torch.Tensor:
    """Mixture posteriors g_k / sum_j g_j over the present classes: (B, K, N), rows sum to 1.

    Not in the paper (whose G is the un-normalised g_k of Eq. 4): the textbook EM responsibility,
    offered as ``AGMMLoss(posterior=True)``. A softmax of -d^2 / (2 sigma^2), so it stays finite
    where every g_k underflows to 0; all zeros in images without components.
    """
    return _present_softmax(log_gaussians(sq_dist, sigma, present), present)


def gaussian_coef(sigma: torch.Tensor) -> torch.Tensor:
    """-1 / (2 sigma^2), the factor of d^2 in log g (Eq. 4): the same shape as ``sigma``."""
    return -0.5 / sigma.pow(2)


def log_gaussians(
    sq_dist: torch.Tensor,
    sigma: torch.Tensor,
    present: torch.Tensor,
    offset: torch.Tensor | None = None,
) -> torch.Tensor:
    """log g_k = -d^2 / (2 sigma_k^2) (+ ``offset``, no gradient) for present classes, -inf for
    the others: (B, K, N).

    One ``addcmul`` with per-class factors and a -inf bias for the absent classes: its backward
    is a product and a sum, where a division by the (B, K, 1) variances and a mask each cost
    several passes over the (B, K, N) tensors.
    """
    coef = gaussian_coef(sigma).unsqueeze(2)  # (B, K, 1)
    bias = torch.zeros_like(coef).masked_fill_(~present.unsqueeze(2), float("-inf"))
    if offset is not None:
        bias = offset.detach() + bias
    return torch.addcmul(bias, sq_dist, coef)


def product_target(
    sq_dist: torch.Tensor,
    sigma: torch.Tensor,
    present: torch.Tensor,
    probs: torch.Tensor,
    *,
    within: bool = False,
) -> torch.Tensor:
    """G x P, normalised over the present classes: (B, K, N), rows sum to 1 (0 without classes).

    ``probs``: the segmenter's P on the same grid (B, K, N), treated as fixed (no gradient). Not
    in the paper: the GMM's likelihood g_k = exp(-d^2 / 2 sigma^2) times the segmenter's belief,
    i.e. the posterior of a mixture whose class prior is P. Computed as a softmax of
    -d^2 / (2 sigma^2) + log P so that it stays finite where every g_k underflows.

    ``within=True`` rescales each position's target to P's total mass on the present classes:
    the GMM re-distributes the probability that the position belongs to one of them, and leaves
    the rest with the classes the crop has no label of (instead of claiming every position for a
    labeled class, which teaches P wrong classes where a crop lost some classes' labels).
    """
    probs = probs.detach()
    log_p = probs.clamp_min(1e-12).log()
    target = _present_softmax(log_gaussians(sq_dist, sigma, present, offset=log_p), present)
    if within:
        target = target * (probs * present.unsqueeze(2).to(probs.dtype)).sum(dim=1, keepdim=True)
    return target


def product_target_bce(
    probs: torch.Tensor,
    sq_dist: torch.Tensor,
    sigma: torch.Tensor,
    present: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    within: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L_self with the G x P target as one autograd node: returns ``(loss, target)``.

    The same value and gradients as ``losses.self_supervision_loss(probs, product_target(sq_dist,
    sigma, present, probs, within=within), present, weights)`` (pixel reduction): the BCE of P
    against the target, over the present (image, class) pairs. ``probs`` P (B, K, N), ``sq_dist``
    (B, K, N), ``sigma`` (B, K), ``present`` (B, K) bool, ``weights`` (B, N) share of real image
    per position or None; ``target`` (B, K, N) comes back detached. Gradients reach P through the
    BCE only (the target treats P as fixed) and d^2 and sigma through the target; the backward is
    the chain rule by hand, a dozen passes over the maps where autograd's takes about thirty.
    """
    return _ProductTargetBCE.apply(probs, sq_dist, sigma, present, weights, within)


class _ProductTargetBCE(torch.autograd.Function):
    """See :func:`product_target_bce`. With t the target, q = 1 + eps - p and c the loss's
    per-(image, class, position) weight (present / count, times the position's weight):
    dL/dp = -c (t / (p + eps) - (1 - t) / q); dL/dt = -c (log(p + eps) - log q), then the
    softmax's backward a = t (dL/dt - sum_k t dL/dt) (times P's present mass with ``within``),
    dL/dd^2 = a coef and dL/dsigma = sum_n a d^2 / sigma^3 for coef = -1 / (2 sigma^2)."""

    @staticmethod
    def forward(ctx, probs, sq_dist, sigma, present, weights, within):
        coef = gaussian_coef(sigma)
        # log_gaussians(sq_dist, sigma, present, offset=log P), in place on log P
        logits = probs.clamp_min(1e-12).log_().addcmul_(sq_dist, coef.unsqueeze(2))
        logits.masked_fill_(~present.unsqueeze(2), float("-inf"))
        target = _present_softmax(logits, present)
        unscaled, ctx.mass = target, None
        if within:  # times P's mass on the present classes, a constant
            ctx.mass = (probs * present.unsqueeze(2).to(probs.dtype)).sum(dim=1, keepdim=True)
            target = target * ctx.mass
        log_q = torch.log1p(BCE_EPS - probs)
        diff = (probs + BCE_EPS).log_().sub_(log_q)  # log(p + eps) - log q
        log_likelihood = torch.addcmul(log_q, target, diff)  # lerp(log q, log(p + eps), t)
        pairs = present.to(probs.dtype)
        if weights is None:
            per_pair = log_likelihood.sum(dim=2)
            count = pairs.sum() * probs.shape[2]
        else:
            weights = weights.to(probs.dtype)
            per_pair = (log_likelihood * weights.unsqueeze(1)).sum(dim=2)  # no bmm: autocast
            count = (pairs * weights.sum(dim=1, keepdim=True)).sum()
        count = count.clamp_min(1.0)
        loss = -(per_pair * pairs).sum() / count
        ctx.save_for_backward(probs, sq_dist, sigma, coef, target, unscaled, diff, pairs, count)
        ctx.weights = weights
        ctx.mark_non_differentiable(target)
        return loss, target

    @staticmethod
    def backward(ctx, grad_loss, _grad_target):
        probs, sq_dist, sigma, coef, target, unscaled, diff, pairs, count = ctx.saved_tensors
        scale = ((-grad_loss / count) * pairs).unsqueeze(2)  # (B, K, 1)
        if ctx.weights is not None:
            scale = scale * ctx.weights.unsqueeze(1)  # (B, K, N)
        grad_probs = grad_sq_dist = grad_sigma = None
        if ctx.needs_input_grad[0]:
            grad_probs = target / (probs + BCE_EPS)
            grad_probs -= (1.0 - target) / (1.0 + BCE_EPS - probs)
            grad_probs *= scale
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_target = diff * scale
            if ctx.mass is not None:
                grad_target *= ctx.mass
            grad_logit = grad_target - (unscaled * grad_target).sum(dim=1, keepdim=True)
            grad_logit *= unscaled  # softmax's backward
            if ctx.needs_input_grad[1]:
                grad_sq_dist = grad_logit * coef.unsqueeze(2)
            if ctx.needs_input_grad[2]:
                grad_coef = (grad_logit * sq_dist).sum(dim=2)
                grad_sigma = grad_coef / sigma.pow(3)
        return grad_probs, grad_sq_dist, grad_sigma, None, None, None


def _present_softmax(logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Softmax over classes of (B, K, N) logits that are -inf for the absent classes; all zeros
    in images without any present class."""
    has_any = present.any(dim=1)[:, None, None]
    if bool(has_any.all()):  # the usual case: every image has a component
        return torch.softmax(logits, dim=1)
    logits = torch.where(has_any, logits, torch.zeros_like(logits))
    return torch.softmax(logits, dim=1) * has_any.to(logits.dtype)


def hard_responsibilities(probs: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """One-hot arg-max of G over the present classes: (B, K, N), zero where no class is present."""
    masked = probs.masked_fill(~present.unsqueeze(2), -1.0)
    winner = masked.max(dim=1).indices  # (B, N); = argmax(dim=1), ~10x faster on CPU
    one_hot = F.one_hot(winner, probs.shape[1]).permute(0, 2, 1).to(probs.dtype)
    return one_hot * present.unsqueeze(2).to(probs.dtype)


def add_prior_components(
    fitted: GMMParams,
    feats: torch.Tensor,
    image_classes: torch.Tensor,
    prior: ClassPrior,
    *,
    distance: Distance = "l1",
    sigma_floor: float = 0.05,
    posterior: bool = False,
) -> GMMParams:
    """Give the image's classes that have no labeled pixel here a component from ``prior``.

    ``fitted``: the E-step mixture (its ``present`` = classes labeled in this crop);
    ``image_classes``: (B, K) bool, the classes the image contains (e.g. every class clicked
    anywhere in the full image, of which a crop keeps only some). A class of the image that is
    unlabeled in the crop but has been seen in the dataset gets mu = prior.mu and
    sigma^2 = prior.variance (detached statistics), so the crop's mixture still covers it.
    Not in the paper (which fits components from the image's own labels only).
    """
    added = image_classes & ~fitted.present & prior.seen.unsqueeze(0)  # (B, K)
    if not bool(added.any()):
        return fitted
    batch = fitted.mu.shape[0]
    prior_mu = prior.mu.to(fitted.mu.dtype).unsqueeze(0).expand(batch, -1, -1)
    prior_sigma = prior.variance.to(fitted.sigma.dtype).clamp_min(sigma_floor**2).sqrt()
    return _replace_components(
        fitted,
        added,
        prior_mu,
        prior_sigma.unsqueeze(0).expand(batch, -1),
        feats,
        distance=distance,
        posterior=posterior,
    )


def _replace_components(
    fitted: GMMParams,
    which: torch.Tensor,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    feats: torch.Tensor,
    *,
    distance: Distance,
    posterior: bool,
) -> GMMParams:
    """``fitted`` with the components ``which`` (B, K) set to ``mu`` (B, K, C) / ``sigma`` (B, K)
    and marked present; distances and G recomputed."""
    mu = torch.where(which.unsqueeze(2), mu, fitted.mu)
    sigma = torch.where(which, sigma, fitted.sigma)
    sq_dist = squared_distance(feats, mu, distance)
    present = fitted.present | which
    predict = gmm_posteriors if posterior else gmm_probabilities
    return GMMParams(mu, sigma, predict(sq_dist, sigma, present), sq_dist, present)


def class_statistics(
    fitted: GMMParams, label_weights: torch.Tensor, *, sigma_floor: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch totals for a :class:`ClassPrior` update, from an E-step fit on labeled pixels.

    Returns ``(mass (K,), mass-weighted centres (K, C), mass-weighted variances (K,))``: divide the
    last two by ``mass`` (after summing over processes) for the batch's class means. The variance
    of each image's class is its labels' own (Eq. 2, floored at ``sigma_floor``), whatever
    ``fitted``'s sigma was shrunk to; classes without labels carry no mass and add nothing.
    """
    mass = label_weights.sum(dim=2)  # (B, K)
    weighted_mu = torch.einsum("bk,bkc->kc", mass, fitted.mu)
    # m_k max(v_k, floor^2) = max(m_k v_k, m_k floor^2), summed over the batch
    scatter = (label_weights * fitted.sq_dist).sum(dim=2)
    weighted_var = torch.maximum(scatter, mass * sigma_floor**2).sum(dim=0)
    return mass.sum(dim=0), weighted_mu, weighted_var


def online_em(
    feats: torch.Tensor,
    label_weights: torch.Tensor,
    present: torch.Tensor,
    *,
    valid_weights: torch.Tensor | None = None,
    steps: int = 1,
    responsibilities: Literal["soft", "hard"] = "soft",
    distance: Distance = "l1",
    sigma_floor: float = 0.05,
    posterior: bool = False,
    prior_mass: float = 0.0,
    image_classes: torch.Tensor | None = None,
    class_prior: ClassPrior | None = None,
) -> tuple[GMMParams, GMMParams]:
    """E-step from the weak labels, then ``steps`` M-steps over all pixels (Sec. 3.3).

    ``feats``: (B, C, N); ``label_weights``: (B, K, N) from :func:`pool_labels`; ``present``: (B, K);
    ``valid_weights``: (B, N) fraction of each cell that is image rather than padding.
    ``image_classes`` (B, K) and ``class_prior``: see :func:`add_prior_components` (both or none).
    Returns ``(old, new)``: the E-step mixture (G_old) and the mixture after the last M-step
    (G_new; the same object as ``old`` when ``steps == 0``). Gradients flow through every step.
    ``old.present`` / ``new.present`` say which classes have a component.
    """
    fit_args = {
        "distance": distance,
        "sigma_floor": sigma_floor,
        "posterior": posterior,
        "prior_mass": prior_mass,
    }
    old = fit_components(feats, label_weights, present, **fit_args)
    if class_prior is not None and image_classes is not None:
        old = add_prior_components(
            old,
            feats,
            image_classes,
            class_prior,
            distance=distance,
            sigma_floor=sigma_floor,
            posterior=posterior,
        )
        present = old.present
    current = old
    for _ in range(steps):  # a handful of EM iterations, not a loop over classes or pixels
        if responsibilities == "soft":
            resp = current.probs
        elif responsibilities == "hard":
            resp = hard_responsibilities(current.probs, present)
        else:
            raise ValueError(f"responsibilities must be 'soft' or 'hard', got {responsibilities!r}")
        if valid_weights is not None:
            resp = resp * valid_weights.unsqueeze(1)
        fitted = fit_components(feats, resp, present, **fit_args)
        # A component that wins no pixel keeps its previous centre and spread (re-estimating it
        # from nothing would put mu at 0).
        starved = present & (resp.sum(dim=2) <= _EPS)
        if bool(starved.any()):
            fitted = _replace_components(
                fitted,
                starved,
                current.mu,
                current.sigma,
                feats,
                distance=distance,
                posterior=posterior,
            )
        current = fitted
    return old, current


def assign_labels(
    sq_dist: torch.Tensor, sigma: torch.Tensor, present: torch.Tensor, *, ignore_index: int = 255
) -> torch.Tensor:
    """Hard 'label assignment' baseline (Eq. 18): returns class ids (B, N), ``ignore_index`` elsewhere.

    A position gets class i when d_i < sigma_i and d_j > sigma_j for every other present class j.
    """
    inside = (sq_dist < sigma.pow(2).unsqueeze(2)) & present.unsqueeze(2)  # (B, K, N)
    exactly_one = inside.sum(dim=1) == 1
    labels = inside.to(torch.uint8).max(dim=1).indices  # the first class inside
    return torch.where(exactly_one, labels, torch.full_like(labels, ignore_index))


def centre_distance(mu: torch.Tensor, kind: Distance = "l1") -> torch.Tensor:
    """Channel-averaged squared distance between every pair of centres: (B, K, C) -> (B, K, K)."""
    return squared_distance(mu.transpose(1, 2), mu, kind)


def sample_at_pixels(
    grid: torch.Tensor,
    batch_idx: torch.Tensor,
    y_idx: torch.Tensor,
    x_idx: torch.Tensor,
    image_size: tuple[int, int],
    *,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Bilinear value of a (B, K, h, w) map at pixels of an (H, W) image: returns (L, K).

    Equal to ``F.interpolate(grid, image_size, mode="bilinear", align_corners=False)[b, :, y, x]``
    but only for the L requested pixels, so sparse labels cost O(L K) instead of O(B K H W). The
    four corners of every pixel are one ``index_select`` of the (B h w, K) rows, whose backward is
    one ``index_add`` (four advanced-index gathers cost 1.6x more, forward + backward). The blend
    is computed in ``dtype`` (default: the grid's), e.g. float32 samples of a bf16 map.
    """
    _, channels, cells_h, cells_w = grid.shape
    dtype = dtype or grid.dtype
    index, _, weights = bilinear_corners(
        batch_idx, y_idx, x_idx, (cells_h, cells_w), image_size, dtype
    )
    values = grid.permute(0, 2, 3, 1).reshape(-1, channels).index_select(0, index)  # (4 L, K)
    return blend_corners(values.to(dtype), weights)


def gmm_at_pixels(
    fitted: GMMParams,
    batch_idx: torch.Tensor,
    y_idx: torch.Tensor,
    x_idx: torch.Tensor,
    grid_size: tuple[int, int],
    image_size: tuple[int, int],
    *,
    posterior: bool = False,
    sq_dist_rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """``sample_at_pixels(fitted.probs)``, but G evaluated at the sampled cells only: (L, K).

    G at a cell is a function of that cell's distances (:func:`gmm_probabilities`, or
    :func:`gmm_posteriors` with ``posterior``), so the four corners of the L pixels need d^2 at
    4 L cells, not the whole map: the gradient of L_weak then never passes through the
    (B, K, N) map of G. ``grid_size``: (h, w) of the N = h * w positions; ``sq_dist_rows``:
    :func:`position_rows` of ``fitted.sq_dist``, if the caller has it.
    """
    dtype = fitted.sq_dist.dtype
    index, images, weights = bilinear_corners(batch_idx, y_idx, x_idx, grid_size, image_size, dtype)
    if sq_dist_rows is None:
        sq_dist_rows = position_rows(fitted.sq_dist)
    sq_dist = sq_dist_rows.index_select(0, index).unsqueeze(2)  # (4 L, K, 1)
    predict = gmm_posteriors if posterior else gmm_probabilities
    sigma = fitted.sigma.index_select(0, images)  # not sigma[images]: same slow backward
    probs = predict(sq_dist, sigma, fitted.present.index_select(0, images))[:, :, 0]  # (4 L, K)
    return blend_corners(probs, weights)


def weak_bce_at_pixels(
    sq_dist_rows: torch.Tensor,
    sigma: torch.Tensor,
    present: torch.Tensor,
    pixels: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    labels: torch.Tensor,
    grid_size: tuple[int, int],
    image_size: tuple[int, int],
) -> torch.Tensor:
    """L_weak (Eq. 12) as one autograd node: the BCE of G at the labeled pixels against their
    one-hot labels, over the present classes of each pixel's image.

    The same value and gradients as ``losses.weak_loss(gmm_at_pixels(...), labels,
    present[batch_idx])`` with G = exp(-d^2 / (2 sigma^2)) (not the posteriors).
    ``sq_dist_rows``: :func:`position_rows` of d^2, (B N, K); ``sigma``, ``present``: (B, K);
    ``pixels``: the labeled pixels' (b, y, x), ``labels`` their class ids (L,). The ~80 small ops
    of the written-out form (the Gaussians at 4 L corners, their blend, the BCE) are a dozen here,
    and the backward is written out: with c = -1 / (2 sigma^2) and w the corners' weights,
    dL/dd^2 = dL/dg w G c at each corner and dL/dsigma = sum dL/dg w G d^2 / sigma^3.
    """
    index, images, weights = bilinear_corners(*pixels, grid_size, image_size, sq_dist_rows.dtype)
    corners = sq_dist_rows.index_select(0, index)
    return weak_bce_at_corners(corners, sigma, present, images, weights, labels)


def weak_bce_at_corners(
    corners: torch.Tensor,
    sigma: torch.Tensor,
    present: torch.Tensor,
    images: torch.Tensor,
    weights: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """:func:`weak_bce_at_pixels` from d^2 at the pixels' corners (4 L, K), already gathered, with
    the ``images`` and ``weights`` of :func:`bilinear_corners` (for callers that gather these
    rows with others in one op)."""
    return _WeakBCE.apply(corners, sigma, present, images, weights, labels)


class _WeakBCE(torch.autograd.Function):
    """See :func:`weak_bce_at_pixels`."""

    @staticmethod
    def forward(ctx, corners, sigma, present, images, weights, labels):
        # corners: (4 L, K) d^2
        coef = gaussian_coef(sigma).index_select(0, images)  # (4 L, K)
        kept = present.index_select(0, images)  # (4 L, K)
        gauss = (corners * coef).exp_().masked_fill_(~kept, 0.0)  # G, 0 for absent classes
        blend = blend_corners(gauss, weights)  # (L, K) g
        pairs = kept[: labels.shape[0]]  # the first block of corners is the pixels' own images
        count = pairs.sum().clamp_min(1).to(corners.dtype)
        own = blend.gather(1, labels.unsqueeze(1))[:, 0]  # g of each pixel's own class
        own_kept = pairs.gather(1, labels.unsqueeze(1))[:, 0].to(corners.dtype)  # (always, in use)
        # sum over present pairs of log(1 - g + eps), with log(g + eps) for the own class
        negative = torch.log1p(BCE_EPS - blend).masked_fill_(~pairs, 0.0)
        positive = torch.log(own + BCE_EPS) - torch.log1p(BCE_EPS - own)
        total = negative.sum() + (positive * own_kept).sum()
        ctx.save_for_backward(sigma, images, weights, labels, corners, coef)
        ctx.saved = (gauss, blend, own, own_kept, pairs, count)
        return -total / count

    @staticmethod
    def backward(ctx, grad_loss):
        sigma, images, weights, labels, corners, coef = ctx.saved_tensors
        gauss, blend, own, own_kept, pairs, count = ctx.saved
        scale = -grad_loss / count
        # d loss / d g: -1 / (1 - g + eps) on present pairs, 1 / (g + eps) at the own class
        grad_blend = (1.0 + BCE_EPS - blend).reciprocal_().neg_().masked_fill_(~pairs, 0.0)
        own_grad = (own + BCE_EPS).reciprocal() + (1.0 + BCE_EPS - own).reciprocal()
        own_grad *= own_kept
        grad_blend.scatter_add_(1, labels.unsqueeze(1), own_grad.unsqueeze(1))
        grad_blend *= scale
        grad_logit = grad_blend.repeat(4, 1).mul_(weights.unsqueeze(1)).mul_(gauss)  # (4 L, K)
        grad_corners = grad_sigma = None
        if ctx.needs_input_grad[0]:
            grad_corners = grad_logit * coef
        if ctx.needs_input_grad[1]:
            grad_coef = torch.zeros_like(sigma).index_add_(0, images, grad_logit * corners)
            grad_sigma = grad_coef / sigma.pow(3)
        return grad_corners, grad_sigma, None, None, None, None


def squeeze_rows(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """A 1x1 convolution of (B, C, h, w) ``features`` as (B, N, C') rows, one per position:
    ``weight`` (C', C), ``bias`` (C',) or None. Under autocast it runs in autocast's precision,
    as ``nn.Conv2d`` would.

    channels_last features are already (B N, C) rows: one ``linear``. Contiguous (NCHW) features
    are multiplied as they lie, (B, N, C) x (C, C') with the features transposed in the product
    (:class:`_SqueezeNCHW`), where a permuted copy of them in the forward and of their gradient
    in the backward cost as much as the products (bf16, B = 8, 128 -> 64 channels on 32 x 32:
    3.2 ms forward + backward against 1.7)."""
    batch, channels, height, width = features.shape
    rows = features.permute(0, 2, 3, 1)
    if rows.is_contiguous() or not features.is_contiguous():  # a view, or a copy either way
        out = F.linear(rows.reshape(-1, channels), weight, bias)
        return out.view(batch, height * width, -1)
    device_type = features.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        features, weight = features.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    with torch.autocast(device_type, enabled=False):
        return _SqueezeNCHW.apply(features.view(batch, channels, -1), weight, bias)


class _SqueezeNCHW(torch.autograd.Function):
    """(B, C, N) features, (C', C) weight, (C',) bias or None -> (B, N, C') rows, as batched
    products with a broadcast weight; the features' gradient comes back (B, C, N), in their
    layout."""

    @staticmethod
    def forward(ctx, feats, weight, bias):
        ctx.save_for_backward(feats, weight)
        ctx.has_bias = bias is not None
        batch = feats.shape[0]
        right = weight.t().expand(batch, -1, -1)  # (B, C, C'), no copy
        if bias is None:
            return torch.bmm(feats.transpose(1, 2), right)
        return torch.baddbmm(bias.expand(batch, 1, -1), feats.transpose(1, 2), right)

    @staticmethod
    def backward(ctx, grad):
        feats, weight = ctx.saved_tensors
        grad = grad.to(feats.dtype)
        grad_feats = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            left = weight.t().expand(feats.shape[0], -1, -1)  # (B, C, C')
            grad_feats = torch.bmm(left, grad.transpose(1, 2))  # (B, C, N)
        if ctx.needs_input_grad[1]:  # sum_b f_b g_b, summed over the images in float32
            per_image = torch.bmm(feats, grad)  # (B, C, C')
            grad_weight = per_image.sum(dim=0, dtype=torch.float32).t().to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=(0, 1), dtype=torch.float32).to(weight.dtype)
        return grad_feats, grad_weight, grad_bias


def position_rows(maps: torch.Tensor) -> torch.Tensor:
    """(B, K, N) -> (B N, K): one row per position, for gathering the positions of labeled
    pixels with ``index_select`` (rows of K contiguous values; its backward is an ``index_add``
    of rows). One copy, which costs less than gathering K values N apart and scattering their
    gradient back (advanced indexing's backward, an accumulating ``index_put``, costs more still)."""
    return maps.transpose(1, 2).reshape(-1, maps.shape[1])


def bilinear_corners(
    batch_idx: torch.Tensor,
    y_idx: torch.Tensor,
    x_idx: torch.Tensor,
    grid_size: tuple[int, int],
    image_size: tuple[int, int],
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The four grid cells around each of L pixels of images ``batch_idx`` and their bilinear
    weights (align_corners=False, PyTorch's clamping at the borders): ``(rows (4 L,), images
    (4 L,), weights (4 L,))``, with rows of the flat (B h w) grid (image * h * w + y * w + x), in
    the order top-left, top-right, bottom-left, bottom-right, each block of L in the pixels'
    order. The weights are computed in ``dtype``. Each axis is a lookup in a table of every pixel
    coordinate (:func:`_axis_corners`, built once per size): a few ops per call where the
    arithmetic on the L coordinates took two dozen."""
    cells_y, weights_y = _axis_corners(grid_size[0], image_size[0], dtype, y_idx.device)
    cells_x, weights_x = _axis_corners(grid_size[1], image_size[1], dtype, x_idx.device)
    rows, cols = cells_y.index_select(1, y_idx), cells_x.index_select(1, x_idx)  # (2, L) each
    images = batch_idx.repeat(4)
    cells = (rows.unsqueeze(1) * grid_size[1] + cols.unsqueeze(0)).reshape(-1)
    weights = weights_y.index_select(1, y_idx).unsqueeze(1) * weights_x.index_select(1, x_idx)
    return images * (grid_size[0] * grid_size[1]) + cells, images, weights.reshape(-1)


def blend_corners(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The bilinear blend of (4 L, K) values at the corners of :func:`bilinear_corners`: (L, K)."""
    blended = values * weights.unsqueeze(1)
    return blended.view(4, values.shape[0] // 4, values.shape[1]).sum(dim=0)


@functools.lru_cache(maxsize=32)
def _axis_corners(
    cells: int, pixels: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every pixel coordinate 0..pixels-1 of one axis, its two grid cells (2, pixels) (low,
    high) and their bilinear weights (2, pixels) (1 - frac, frac), align_corners=False. Read-only
    (cached)."""
    coords = torch.arange(pixels, device=device).to(dtype)
    # Source coordinate of align_corners=False, clamped at 0 as PyTorch's bilinear kernel does.
    src = ((coords + 0.5) * torch.tensor(cells / pixels, dtype=dtype) - 0.5).clamp_min(0.0)
    low = src.floor()
    frac = src - low
    low = low.long().clamp_max(cells - 1)
    return torch.stack([low, (low + 1).clamp_max(cells - 1)]), torch.stack([1.0 - frac, frac])
