"""GMM terms computed as one autograd node each: L_self with the G x P target
(``product_target_bce``) inside AGMMLoss, and L_con (Eq. 14) on the gathered rows; the same
values and gradients as the written-out computations."""

from __future__ import annotations

import pytest
import torch

from agmm import AGMMLoss
from agmm.gmm import functional as gmm_fn
from tests.gmm.test_batch_classes import make_batch, make_sparse_batch, run_patched

FUSED_OPTIONS = [
    {},
    {"self_target": "gmm_x_p_within"},
    {"stop_gradient": True},
    {"oem_steps": 1, "responsibilities": "soft"},
    {"self_pooling": "probs"},
]


@pytest.mark.parametrize("sparse", [False, True])  # K' classes, or per-image slots
@pytest.mark.parametrize("options", FUSED_OPTIONS)
def test_fused_self_term_changes_nothing(options, sparse, monkeypatch):
    classes = 12 if sparse else 7
    options = {"sigma_prior": 4.0, "self_target": "gmm_x_p", **options}
    torch.manual_seed(0)
    criterion = AGMMLoss(in_channels=6, num_classes=classes, embed_dim=5, **options).double()
    features, logits, labels, valid = (make_sparse_batch if sparse else make_batch)()
    calls = []
    fused_fn = gmm_fn.product_target_bce
    monkeypatch.setattr(
        gmm_fn, "product_target_bce", lambda *a, **k: calls.append(1) or fused_fn(*a, **k)
    )

    fused = run_patched(criterion, features, logits, labels, valid)
    assert calls, "the fused L_self was not used"
    calls.clear()
    plain = run_patched(criterion, features, logits, labels, valid, "_fused_self", False)
    assert not calls
    torch.testing.assert_close(fused[0]["loss"], plain[0]["loss"], rtol=1e-10, atol=1e-12)
    for name in ("seg", "self", "weak", "con"):
        torch.testing.assert_close(fused[0]["terms"][name], plain[0]["terms"][name])
    torch.testing.assert_close(fused[0]["self_target"], plain[0]["self_target"])
    for got, expected in zip(fused[1:], plain[1:], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "options",
    [
        {"self_reduction": "class"},
        {"self_classes": "all"},
        {"self_loss": "ce", "self_threshold": 0.3},
        {"self_resolution": "label"},
        {"self_target": "gmm"},
    ],
)
def test_other_self_settings_keep_the_two_steps(options, monkeypatch):
    options = {"sigma_prior": 4.0, "self_target": "gmm_x_p", **options}
    criterion = AGMMLoss(in_channels=6, num_classes=7, embed_dim=5, **options).double()
    features, logits, labels, valid = make_batch()
    monkeypatch.setattr(gmm_fn, "product_target_bce", None)  # would raise if called
    out = criterion(features, logits, labels, valid_mask=valid)
    assert torch.isfinite(out["loss"])


def _contrastive_written_out(sq_dist, label_weights, present):
    """Eq. 14 written out with autograd (the form before the fused node)."""
    batch_idx, cell_idx = (label_weights.sum(dim=1) > 0).nonzero(as_tuple=True)
    weights = label_weights[batch_idx, :, cell_idx]
    present_rows = present[batch_idx].to(sq_dist.dtype)
    labeled = sq_dist[batch_idx, :, cell_idx]
    similarity = torch.exp(-labeled) * present_rows
    positive_sum = (weights * (1.0 - similarity)).sum()
    others = similarity.sum(dim=1, keepdim=True) - similarity
    negative_sum = (weights * others).sum()
    other_centres = (present_rows.sum(dim=1) - 1).clamp_min(0)
    negative_count = (weights.sum(dim=1) * other_centres).sum()
    return positive_sum / weights.sum().clamp_min(1e-8) + negative_sum / negative_count.clamp_min(
        1e-8
    )


@pytest.mark.parametrize("empty", [False, True])
def test_contrastive_rows_match_the_written_out_form(empty):
    from agmm.losses import contrastive_loss

    gen = torch.Generator().manual_seed(15)
    batch, classes, grid = 3, 5, (4, 5)
    sq_dist = (torch.rand(batch, classes, 20, generator=gen) * 3).double().requires_grad_()
    labels = torch.randint(0, classes, (batch, 16, 20), generator=gen)
    labels[torch.rand(batch, 16, 20, generator=gen) > (0.0 if empty else 0.05)] = 255
    weights = gmm_fn.pool_labels(labels, classes, grid, dtype=torch.float64)
    present = weights.sum(dim=2) > 0
    present[1, 0] = True  # a component without labels in the crop: a negative only
    fused = contrastive_loss(sq_dist, weights, present)
    written = _contrastive_written_out(sq_dist, weights, present)
    torch.testing.assert_close(fused, written)
    if empty:
        assert fused.item() == 0.0
        return
    rows = gmm_fn.position_rows(sq_dist)
    torch.testing.assert_close(
        contrastive_loss(sq_dist, weights, present, sq_dist_rows=rows), written
    )
    torch.testing.assert_close(
        torch.autograd.grad(fused, sq_dist)[0], torch.autograd.grad(written, sq_dist)[0]
    )
    assert torch.autograd.gradcheck(
        lambda d: contrastive_loss(d, weights, present), (sq_dist.detach().requires_grad_(),)
    )


def test_fused_terms_stay_float32_under_autocast():
    """The GMM's single-node terms run in their inputs' float32 inside bf16 autocast (the loss
    calls them there): the same values as outside it."""
    from agmm.losses import contrastive_loss

    gen = torch.Generator().manual_seed(16)
    probs = torch.softmax(torch.randn(2, 4, 12, generator=gen), dim=1)
    sq_dist = torch.rand(2, 4, 12, generator=gen) * 3
    sigma = torch.rand(2, 4, generator=gen) + 0.3
    present = torch.ones(2, 4, dtype=torch.bool)
    weights = torch.rand(2, 12, generator=gen)  # padded cells
    label_weights = (torch.rand(2, 4, 12, generator=gen) > 0.8).float()

    def terms():
        self_loss, target = gmm_fn.product_target_bce(probs, sq_dist, sigma, present, weights)
        return self_loss, target, contrastive_loss(sq_dist, label_weights, present)

    plain = terms()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = terms()
    for a, b in zip(mixed, plain, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("with_bias", [True, False])
def test_squeeze_rows_is_the_1x1_convolution(memory_format, with_bias):
    torch.manual_seed(0)
    features = torch.randn(3, 5, 4, 6, dtype=torch.float64).contiguous(memory_format=memory_format)
    features.requires_grad_()
    weight = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(7, dtype=torch.float64, requires_grad=True) if with_bias else None

    rows = gmm_fn.squeeze_rows(features, weight, bias)
    expected = torch.nn.functional.conv2d(features, weight[:, :, None, None], bias)
    assert rows.shape == (3, 24, 7) and rows.is_contiguous()
    torch.testing.assert_close(rows, expected.flatten(2).transpose(1, 2), rtol=0, atol=1e-12)
    inputs = (features, weight) if bias is None else (features, weight, bias)
    assert torch.autograd.gradcheck(
        lambda f, w, *b: gmm_fn.squeeze_rows(f, w, *b or [None]), inputs
    )
    rows.sum().backward()  # the features' gradient in their own layout: no re-layout after it
    assert features.grad.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_squeeze_rows_runs_in_the_autocast_precision(memory_format):
    torch.manual_seed(0)
    features = torch.randn(2, 8, 4, 4).bfloat16().contiguous(memory_format=memory_format)
    weight, bias = torch.randn(3, 8), torch.randn(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rows = gmm_fn.squeeze_rows(features, weight, bias)
    assert rows.dtype == torch.bfloat16
    expected = torch.nn.functional.conv2d(
        features, weight.bfloat16()[:, :, None, None], bias.bfloat16()
    )
    torch.testing.assert_close(
        rows.float(), expected.flatten(2).transpose(1, 2).float(), rtol=1e-2, atol=1e-2
    )


def _spread_written_out(mass, scatter, present, prior_mass, sigma_floor):
    variance = scatter / mass.clamp_min(1e-8)
    if prior_mass > 0:
        kept = present.to(scatter.dtype)
        pooled = (scatter * kept).sum(dim=1) / (mass * kept).sum(dim=1).clamp_min(1e-8)
        variance = (scatter + prior_mass * pooled.unsqueeze(1)) / (mass + prior_mass)
    return variance.clamp_min(sigma_floor**2).sqrt()


@pytest.mark.parametrize("prior_mass", [0.0, 0.7])
def test_spread_node_matches_the_written_out_sigma(prior_mass):
    """Values and gradients, with an empty class, a class below the mass floor, one at the sigma
    floor and an image without present classes; gradcheck away from those kinks."""
    torch.manual_seed(0)
    mass = torch.rand(4, 5, dtype=torch.float64) * 2
    scatter = torch.rand(4, 5, dtype=torch.float64) * 0.05
    mass[0, 1], mass[1, 2], scatter[2, 0] = 0.0, 1e-9, 1e-6
    present = torch.rand(4, 5) > 0.3
    present[3] = False
    mass.requires_grad_(), scatter.requires_grad_()
    args = (present.double(), prior_mass, 0.05**2)

    sigma = gmm_fn._Spread.apply(mass, scatter, *args)
    expected = _spread_written_out(mass, scatter, present, prior_mass, 0.05)
    torch.testing.assert_close(sigma, expected, rtol=1e-12, atol=0)
    weights = torch.randn(4, 5, dtype=torch.float64)
    grads = [torch.autograd.grad((s * weights).sum(), (mass, scatter)) for s in (sigma, expected)]
    for actual, reference in zip(*grads, strict=True):
        torch.testing.assert_close(actual, reference, rtol=1e-10, atol=1e-12)
    smooth = (
        torch.rand(4, 5, dtype=torch.float64) + 0.5,
        torch.rand(4, 5, dtype=torch.float64) + 0.1,
    )
    smooth = tuple(t.requires_grad_() for t in smooth)
    assert torch.autograd.gradcheck(lambda m, s: gmm_fn._Spread.apply(m, s, *args), smooth)


def test_weak_and_con_from_one_gather_match_the_standalone_terms():
    """AGMMLoss gathers L_weak's corners and L_con's positions in one op; its two terms and
    their gradients equal :func:`weak_loss` of G at the pixels and :func:`contrastive_loss` on
    its own fit."""
    from agmm.losses import contrastive_loss, weak_loss

    features, logits, labels, _ = make_batch()
    torch.manual_seed(0)
    criterion = AGMMLoss(in_channels=6, num_classes=7, use_self=False, lambda_seg=0.0).double()
    features.requires_grad_()
    out = criterion(features, logits, labels)
    grad = torch.autograd.grad(out["loss"], features)[0]

    leaf = features.detach().requires_grad_()
    gmm = criterion.fit_gmm(leaf, labels)
    new, present = gmm["new"], gmm["present"]
    pixels = (labels != 255).nonzero(as_tuple=True)
    g = gmm_fn.gmm_at_pixels(new, *pixels, tuple(features.shape[-2:]), tuple(labels.shape[-2:]))
    weak = weak_loss(g, labels[pixels].long(), present[pixels[0]])
    con = contrastive_loss(new.sq_dist, gmm["label_weights"], present)
    torch.testing.assert_close(out["terms"]["weak"], weak.detach())
    torch.testing.assert_close(out["terms"]["con"], con.detach())
    total = criterion.lambdas["weak"] * weak + criterion.lambdas["con"] * con
    torch.testing.assert_close(grad, torch.autograd.grad(total, leaf)[0])
