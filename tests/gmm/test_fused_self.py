"""L_self with the G x P target as one autograd node (``product_target_bce``) inside AGMMLoss:
the same loss, terms, gradients and target as the two-step computation."""

from __future__ import annotations

import pytest
import torch

from agmm import AGMMLoss
from agmm.gmm import functional as gmm_fn
from tests.gmm.test_batch_classes import make_batch, make_sparse_batch

FUSED_OPTIONS = [
    {},
    {"self_target": "gmm_x_p_within"},
    {"stop_gradient": True},
    {"oem_steps": 1, "responsibilities": "soft"},
    {"self_pooling": "probs"},
]


def _run(criterion, features, logits, labels, valid, *, fused: bool):
    feats = features.clone().requires_grad_()
    logs = logits.clone().requires_grad_()
    criterion.zero_grad()
    if not fused:
        criterion._fused_self = lambda *args: False
    try:
        out = criterion(feats, logs, labels, valid_mask=valid)
    finally:
        criterion.__dict__.pop("_fused_self", None)
    out["loss"].backward()
    squeeze_grad = criterion.squeeze.weight.grad  # None with stop_gradient
    return out, feats.grad, logs.grad, None if squeeze_grad is None else squeeze_grad.clone()


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

    fused = _run(criterion, features, logits, labels, valid, fused=True)
    assert calls, "the fused L_self was not used"
    calls.clear()
    plain = _run(criterion, features, logits, labels, valid, fused=False)
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
