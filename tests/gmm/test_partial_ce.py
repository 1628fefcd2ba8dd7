"""L_seg's sparse path (softmax of the labeled pixels only) equals the dense cross-entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from agmm.losses import partial_cross_entropy
from agmm.losses.segmentation import gather_pixels


def _dense_reference(logits, labels, reduction):
    """Full-resolution cross-entropy with ignore_index, reduced as partial_cross_entropy says."""
    per_pixel = F.cross_entropy(logits, labels, ignore_index=255, reduction="none")
    labeled = labels != 255
    if reduction == "pixel":
        return per_pixel.sum() / labeled.sum().clamp_min(1)
    means = [per_pixel[labels == k].mean() for k in range(logits.shape[1]) if (labels == k).any()]
    return torch.stack(means).mean() if means else per_pixel.sum() * 0.0


@pytest.mark.parametrize("fraction", [0.0, 0.003, 0.1, 0.24, 0.6, 1.0])  # both paths
@pytest.mark.parametrize("reduction", ["pixel", "class"])
def test_partial_cross_entropy_equals_the_dense_reference(fraction, reduction):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 9, 11, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 5, (3, 9, 11))
    labels[torch.rand(3, 9, 11) >= fraction] = 255
    got = partial_cross_entropy(logits, labels, reduction=reduction)
    (grad_got,) = torch.autograd.grad(got, logits)
    expected = _dense_reference(logits, labels, reduction)
    (grad_expected,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_got, grad_expected, rtol=1e-12, atol=1e-12)


def test_given_pixels_are_used_and_bf16_logits_give_a_float32_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8)
    labels = torch.full((2, 8, 8), 255)
    labels[0, 1, 2], labels[1, 5, 7] = 3, 0
    pixels = (labels != 255).nonzero(as_tuple=True)
    loss = partial_cross_entropy(logits.bfloat16(), labels, pixels=pixels)
    assert loss.dtype == torch.float32
    expected = F.cross_entropy(logits.bfloat16().float(), labels, ignore_index=255)
    torch.testing.assert_close(loss, expected)
    # only the given pixels count: the first one alone
    first = tuple(index[:1] for index in pixels)
    alone = partial_cross_entropy(logits, labels, pixels=first)
    torch.testing.assert_close(alone, -torch.log_softmax(logits[0, :, 1, 2], 0)[3])


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_gather_pixels_equals_advanced_indexing_with_its_gradient(layout):
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 5, 6, 7, generator=gen, dtype=torch.float64)
    if layout == "channels_last":
        logits = logits.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # neither layout: falls back to advanced indexing
        logits = torch.randn(3, 5, 6, 14, generator=gen, dtype=torch.float64)[..., ::2]
    labeled = torch.rand(3, 6, 7, generator=gen) < 0.3
    b, y, x = labeled.nonzero(as_tuple=True)
    weights = torch.randn(len(b), 5, generator=gen, dtype=torch.float64)

    def rows_and_grad(gather):
        leaf = logits.detach().clone().requires_grad_()
        rows = gather(leaf)
        (grad,) = torch.autograd.grad((rows * weights).sum(), leaf)
        return rows, grad

    got = rows_and_grad(lambda t: gather_pixels(t, b, y, x))
    expected = rows_and_grad(lambda t: t[b, :, y, x])
    for a, e in zip(got, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=0, atol=0)
