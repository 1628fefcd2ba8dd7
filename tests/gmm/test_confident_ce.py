"""L_self as a confident hard cross-entropy (``self_loss="ce"``): loop reference, gradients, edges."""

from __future__ import annotations

import pytest
import torch

from agmm import AGMMLoss
from agmm.losses import confident_cross_entropy
from tests.gmm import reference
from tests.gmm.test_loss import K, make_batch


def random_inputs(seed: int, *, weights: bool):
    generator = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(2, K, 5, 4, generator=generator, dtype=torch.float64), 1)
    target = torch.softmax(3 * torch.randn(2, K, 5, 4, generator=generator, dtype=torch.float64), 1)
    present = torch.rand(2, K, generator=generator) < 0.7
    present[:, 0] = True
    mask = torch.rand(2, 5, 4, generator=generator, dtype=torch.float64) if weights else None
    return probs, target, present, mask


@pytest.mark.parametrize("reduction", ["pixel", "class"])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.9])
def test_matches_the_loop_reference(reduction, weights, threshold):
    probs, target, present, mask = random_inputs(1, weights=weights)
    got = confident_cross_entropy(
        probs, target, present, mask, threshold=threshold, reduction=reduction
    )
    expected = reference.confident_ce(probs, target, present, mask, threshold, reduction)
    assert got.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_gradient_reaches_p_only_at_confident_positions():
    probs, target, present, _ = random_inputs(2, weights=False)
    probs.requires_grad_(True)
    target.requires_grad_(True)
    confident_cross_entropy(probs, target, present, threshold=0.6).backward()
    masked = (target * present[:, :, None, None]).max(dim=1).values
    grad_positions = probs.grad.abs().sum(dim=1) > 0
    assert torch.equal(grad_positions, masked >= 0.6)
    assert target.grad is None or not target.grad.any()  # the target is fixed
    torch.autograd.gradcheck(
        lambda p: confident_cross_entropy(p, target.detach(), present, threshold=0.6),
        (probs.detach().clone().requires_grad_(True),),
    )


def test_nothing_confident_gives_zero_attached_to_p():
    probs, target, present, _ = random_inputs(3, weights=False)
    probs.requires_grad_(True)
    for reduction in ("pixel", "class"):
        loss = confident_cross_entropy(
            probs, target * 0.0, present, threshold=0.5, reduction=reduction
        )
        assert loss.item() == 0.0 and loss.requires_grad
        loss.backward()
        assert torch.isfinite(probs.grad).all()
    no_class = torch.zeros_like(present)
    assert confident_cross_entropy(probs, target, no_class, threshold=0.0).item() == 0.0


def test_absent_classes_never_become_labels():
    """A class without a component can have the largest target value and still not be chosen."""
    probs = torch.full((1, 3, 1, 1), 1 / 3, dtype=torch.float64)
    target = torch.tensor([0.1, 0.0, 0.95], dtype=torch.float64).view(1, 3, 1, 1)
    present = torch.tensor([[True, True, False]])
    assert confident_cross_entropy(probs, target, present, threshold=0.5).item() == 0.0
    loss = confident_cross_entropy(probs, target, present, threshold=0.05)
    assert loss.item() == pytest.approx(-torch.log(torch.tensor(1 / 3 + 1e-6)).item())


@pytest.mark.parametrize("reduction", ["pixel", "class"])
def test_agmm_loss_self_ce_term(reduction):
    """self_loss="ce" scores P against the same target L_self would use, and stays finite on the
    edge inputs (all-ignored image, one-pixel class)."""
    features, logits, labels = make_batch(seed=5)
    labels[1] = 255
    logits.requires_grad_(True)
    criterion = AGMMLoss(
        in_channels=6,
        num_classes=K,
        self_target="gmm_x_p",
        self_loss="ce",
        self_threshold=0.5,
        self_reduction=reduction,
        oem_steps=0,
        sigma_prior=4.0,
    ).double()
    out = criterion(features, logits, labels)
    pooled = torch.softmax(torch.nn.functional.avg_pool2d(logits, 4), 1)  # self_pooling="logits"
    expected = reference.confident_ce(
        pooled.detach(), out["self_target"], out["present"], None, 0.5, reduction
    )
    assert out["terms"]["self"].item() == pytest.approx(expected, rel=1e-9)
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all()
    assert torch.isfinite(criterion.squeeze.weight.grad).all()


def test_bad_self_loss_options_are_rejected():
    with pytest.raises(ValueError, match="self_loss"):
        AGMMLoss(in_channels=6, num_classes=K, self_loss="focal")
    with pytest.raises(ValueError, match="self_threshold"):
        AGMMLoss(in_channels=6, num_classes=K, self_threshold=1.5)
