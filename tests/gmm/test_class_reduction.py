"""Class-balanced L_seg and L_self (``reduction="class"``): loop references, gradients, errors.

Finiteness on empty, one-pixel and all-ignored inputs: tests/gmm/test_loss.py (both reductions)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from agmm import AGMMLoss
from agmm.losses import partial_cross_entropy, self_supervision_loss
from tests.gmm import reference
from tests.gmm.test_loss import K, make_batch, make_loss


@pytest.mark.parametrize("density", [0.02, 0.3, 1.0])
def test_class_reduced_seg_loss_matches_the_loop_reference(density):
    _, logits, labels = make_batch(seed=3, density=density)
    got = partial_cross_entropy(logits, labels, reduction="class")
    assert got.item() == pytest.approx(reference.seg_loss_class(logits, labels), rel=1e-9)


def test_class_reduced_seg_loss_weighs_a_one_pixel_class_like_the_rest():
    """A dense mask with one pixel of class 1: its error counts half, not 1/N of the loss."""
    logits = torch.zeros(1, 2, 8, 8, dtype=torch.float64)
    logits[:, 0] = 3.0  # confident class 0 everywhere
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 4, 4] = 1
    ce = F.cross_entropy(logits, labels, reduction="none")[0]
    per_pixel = partial_cross_entropy(logits, labels)
    per_class = partial_cross_entropy(logits, labels, reduction="class")
    background = ce[labels[0] == 0].mean()
    assert per_class.item() == pytest.approx(0.5 * (background + ce[4, 4]).item(), rel=1e-12)
    assert per_class > 10 * per_pixel


def test_class_reduced_seg_loss_is_zero_and_attached_without_labels():
    logits = torch.randn(2, K, 6, 5, requires_grad=True)
    loss = partial_cross_entropy(logits, torch.full((2, 6, 5), 255), reduction="class")
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


@pytest.mark.parametrize("with_weights", [False, True])
def test_class_reduced_self_loss_matches_the_loop_reference(with_weights):
    gen = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(2, K, 5, 4, generator=gen, dtype=torch.float64), dim=1)
    g = torch.rand(2, K, 5, 4, generator=gen, dtype=torch.float64) ** 3
    g[0, 2] = 0.0  # a present class whose G underflowed everywhere: no positive part
    present = torch.tensor([[True, False, True, True], [True, True, False, False]])
    weights = None
    if with_weights:
        weights = torch.rand(2, 5, 4, generator=gen, dtype=torch.float64)
        weights[1, :, -1] = 0.0  # padding
    got = self_supervision_loss(probs, g, present, weights, reduction="class")
    expected = reference.self_loss_class(probs, g, present, weights)
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_class_reduced_self_loss_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(2)
    probs = torch.softmax(torch.randn(2, K, 4, 3, generator=gen, dtype=torch.float64), dim=1)
    g = torch.rand(2, K, 4, 3, generator=gen, dtype=torch.float64)
    present = torch.rand(2, K, generator=gen) > 0.3
    present[:, 0] = True
    weights = torch.rand(2, 4, 3, generator=gen, dtype=torch.float64)
    probs.requires_grad_(True)
    g.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda p, t: self_supervision_loss(p, t, present, weights, reduction="class"), (probs, g)
    )


def test_agmm_loss_uses_both_class_reductions():
    features, logits, labels = make_batch(density=0.3)
    criterion = make_loss(seg_reduction="class", self_reduction="class")
    out = criterion(features, logits, labels)
    assert out["terms"]["seg"].item() == pytest.approx(
        reference.seg_loss_class(logits, labels), rel=1e-9
    )
    present = reference.pool_labels(labels, K, (4, 3)).sum(2) > 0
    pooled = torch.softmax(F.avg_pool2d(logits, 4), dim=1)  # self_pooling="logits"
    expected = reference.self_loss_class(pooled, out["gmm_new"], present, None)
    assert out["terms"]["self"].item() == pytest.approx(expected, rel=1e-9)
    # and the pixel reductions (the defaults) give different numbers on the same batch
    default = make_loss()(features, logits, labels)
    assert default["terms"]["seg"].item() != pytest.approx(out["terms"]["seg"].item(), rel=1e-3)


def test_bad_reduction_is_rejected():
    with pytest.raises(ValueError, match="seg_reduction must be one of"):
        AGMMLoss(in_channels=6, num_classes=K, seg_reduction="mean")
    with pytest.raises(ValueError, match="reduction must be"):
        self_supervision_loss(
            torch.rand(1, 2, 2, 2),
            torch.rand(1, 2, 2, 2),
            torch.ones(1, 2, dtype=torch.bool),
            reduction="sum",
        )
