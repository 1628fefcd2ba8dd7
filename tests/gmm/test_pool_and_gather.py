"""pool_and_gather: the pooled logits and labeled rows of AGMMLoss, with one fused backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from agmm.gmm import loss as loss_module
from agmm.gmm.loss import (
    _pool_rows,
    _rows_are_faster,
    _upsample_rows,
    coarse_cell_means,
    pool_and_gather,
)


def _reference(logits, kernel, pixels, valid):
    if valid is None:
        pooled, cells = F.avg_pool2d(logits, kernel), None
    else:
        weights = valid[:, None].to(logits.dtype)
        cells = F.avg_pool2d(weights, kernel)
        pooled = F.avg_pool2d(logits * weights, kernel) / cells.clamp_min(1e-6)
        cells = cells[:, 0]
    b, y, x = pixels
    return pooled, cells, logits[b, :, y, x]


@pytest.mark.parametrize("with_valid", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel", [(4, 4), (2, 3)])
def test_values_and_gradients_equal_pooling_and_indexing(with_valid, channels_last, kernel):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 8, 12, generator=gen, dtype=torch.float64)
    if channels_last:
        logits = logits.contiguous(memory_format=torch.channels_last)
    labeled = torch.rand(3, 8, 12, generator=gen) < 0.2
    labeled[0, 1, 1] = labeled[0, 1, 2] = True  # two labels in one cell
    pixels = labeled.nonzero(as_tuple=True)
    valid = None
    if with_valid:
        valid = torch.ones(3, 8, 12, dtype=torch.bool)
        valid[1, :, -5:] = False
        valid[2, -4:, :] = False  # whole cells of padding
    pooled_w = torch.randn(
        3, 5, 8 // kernel[0], 12 // kernel[1], generator=gen, dtype=torch.float64
    )
    rows_w = torch.randn(len(pixels[0]), 5, generator=gen, dtype=torch.float64)

    def total(fn):
        x = logits.detach().clone().requires_grad_()
        pooled, cells, rows = fn(x, kernel, pixels, valid)
        (grad,) = torch.autograd.grad((pooled * pooled_w).sum() + (rows * rows_w).sum(), x)
        return pooled, cells, rows, grad

    got, expected = total(pool_and_gather), total(_reference)
    for a, b in zip(got, expected, strict=True):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gradcheck_and_unused_outputs():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    pixels = (torch.tensor([0, 1, 1]), torch.tensor([0, 3, 3]), torch.tensor([5, 2, 2]))
    valid = torch.ones(2, 4, 6, dtype=torch.bool)
    valid[0, :, :3] = False

    def fused(x):
        pooled, _, rows = pool_and_gather(x, (2, 2), pixels, valid)
        return pooled, rows

    assert torch.autograd.gradcheck(fused, (logits,))
    _, _, rows = pool_and_gather(logits, (2, 2), pixels)
    (grad,) = torch.autograd.grad(rows.sum(), logits)  # the pooled output unused
    expected = torch.zeros_like(logits)
    expected[1, :, 3, 2] = 2.0  # the same pixel twice
    expected[0, :, 0, 5] = 1.0
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kernel", [(4, 4), (2, 3), (1, 2)])
def test_row_forms_of_pooling_and_upsampling_match_the_stock_kernels(dtype, kernel):
    # NCHW CPU tensors pool as row sums + a matrix product and upsample as a 0/1 matrix product
    # + repeated rows (faster than avg_pool2d / nearest interpolate there); the same values.
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 7, 8, 12, generator=gen).to(dtype)
    assert _rows_are_faster(x)
    assert not _rows_are_faster(x.contiguous(memory_format=torch.channels_last))
    pooled = _pool_rows(x, kernel)
    expected = F.avg_pool2d(x, kernel)
    tolerance = {"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {}
    torch.testing.assert_close(pooled, expected, **tolerance)
    cells = torch.randn(2, 7, 3, 4, generator=gen).to(dtype)
    upsampled = _upsample_rows(cells, kernel)
    assert torch.equal(upsampled, F.interpolate(cells, scale_factor=kernel, mode="nearest"))


def _cell_means_match_the_upsampling(coarse: torch.Tensor, factor) -> torch.Tensor:
    """Asserts that coarse_cell_means equals the mean over each cell of the bilinear upsampling,
    values and gradients (float64); returns the gradient."""
    size = (coarse.shape[2] * factor[0], coarse.shape[3] * factor[1])
    expected = F.avg_pool2d(
        F.interpolate(coarse, size=size, mode="bilinear", align_corners=False), factor
    )
    actual = coarse_cell_means(coarse, size)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(expected)
    grads = [torch.autograd.grad((v * weights).sum(), coarse)[0] for v in (actual, expected)]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)
    return grads[0]


@pytest.mark.parametrize("grid", [(5, 7), (1, 2), (2, 1)])
@pytest.mark.parametrize("factor", [(4, 4), (2, 3), (1, 8), (16, 16)])
def test_coarse_cell_means_equal_pooling_the_bilinear_upsampling(factor, grid):
    coarse = torch.randn(2, 3, *grid, dtype=torch.float64, requires_grad=True)
    _cell_means_match_the_upsampling(coarse, factor)
    # bf16 coarse logits (a bf16 model): computed in float32
    size = (grid[0] * factor[0], grid[1] * factor[1])
    assert coarse_cell_means(coarse.detach().bfloat16(), size).dtype == torch.float32


@pytest.mark.parametrize("factor", [(4, 4), (2, 3)])
def test_coarse_cell_means_by_convolution_equal_pooling_the_bilinear_upsampling(factor):
    """Many classes in channels_last take the depthwise convolution (CPU): the same values and
    gradients as the upsampling's cell means, and as the narrowed adds and the band-matrix
    products (NCHW)."""
    coarse = torch.randn(2, 33, 5, 7, dtype=torch.float64)
    coarse = coarse.contiguous(memory_format=torch.channels_last).requires_grad_()
    grad = _cell_means_match_the_upsampling(coarse, factor)
    assert grad.is_contiguous(memory_format=torch.channels_last)
    taps = (loss_module._side_tap(5, factor[0]), loss_module._side_tap(7, factor[1]))
    by_adds = loss_module._three_tap(loss_module._three_tap(coarse, taps[0], 2), taps[1], 3)
    torch.testing.assert_close(loss_module._filter_cells(coarse, taps), by_adds)
    # NCHW maps: the band-matrix products
    torch.testing.assert_close(loss_module._filter_cells(coarse.contiguous(), taps), by_adds)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_coarse_cell_means_gradient_comes_back_in_the_logits_dtype_and_layout(memory_format):
    """The upstream gradient is contiguous float32 (P's softmax); the classifier wants bf16 in
    its own layout, with the same values as the float64 filter's."""
    torch.manual_seed(0)
    coarse = torch.randn(2, 5, 6, 7).bfloat16().contiguous(memory_format=memory_format)
    coarse.requires_grad_()
    weights = torch.randn(2, 5, 6, 7)
    (coarse_cell_means(coarse, (24, 28)) * weights).sum().backward()
    assert coarse.grad.dtype == torch.bfloat16
    assert coarse.grad.is_contiguous(memory_format=memory_format)
    reference = coarse.detach().double().requires_grad_()
    (coarse_cell_means(reference, (24, 28)) * weights.double()).sum().backward()
    torch.testing.assert_close(coarse.grad.double(), reference.grad, rtol=1e-2, atol=1e-2)


def test_row_pooling_keeps_the_input_precision_under_autocast():
    """Like avg_pool2d / interpolate, which autocast leaves alone: float32 stays float32."""
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled, upsampled = _pool_rows(x, (4, 4)), _upsample_rows(x[:, :, :2, :2], (4, 4))
    assert pooled.dtype == upsampled.dtype == torch.float32
    torch.testing.assert_close(pooled, F.avg_pool2d(x, 4))
