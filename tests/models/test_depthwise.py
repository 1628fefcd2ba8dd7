"""The CPU fast path of depthwise convolutions computes exactly what the stock modules compute."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from timm.layers import create_conv2d
from torch import nn

from agmm.config import load_config
from agmm.models.build import build_segmenter
from agmm.models.depthwise import (
    DepthwiseConv2d,
    _space_to_batch_conv,
    speed_up_depthwise,
)


@pytest.mark.parametrize(
    "height,width,kernel,dilation,padding",
    [
        (h, w, k, d, p)
        for h, w, k, d, p in itertools.product((5, 8, 9), (6, 11), (3, 5), (2, 3), ("same", 0, 2))
        if h + 2 * (d * (k - 1) // 2 if p == "same" else p) >= d * (k - 1) + 1
        and w + 2 * (d * (k - 1) // 2 if p == "same" else p) >= d * (k - 1) + 1
    ],
)
def test_space_to_batch_equals_the_dilated_convolution(height, width, kernel, dilation, padding):
    torch.manual_seed(0)
    pad = dilation * (kernel - 1) // 2 if padding == "same" else padding
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(3, 1, kernel, kernel, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)
    expected = F.conv2d(x, weight, bias, 1, pad, dilation, 3)
    got = _space_to_batch_conv(x, weight, bias, (pad, pad), (dilation, dilation))
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_space_to_batch_gradients_pass_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)

    def conv(x, weight):
        x = x.contiguous(memory_format=torch.channels_last)
        return _space_to_batch_conv(x, weight, None, (2, 2), (2, 2))

    assert torch.autograd.gradcheck(conv, (x, weight))


def _stock_depthwise_modules():
    """Depthwise convolutions as timm's EfficientNets build them (Conv2dSame for tf_ models)."""
    return [
        nn.Conv2d(6, 6, 3, padding=1, groups=6),
        nn.Conv2d(6, 6, 5, padding=4, dilation=2, groups=6, bias=False),  # output stride 16
        nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6),
        create_conv2d(6, 6, 5, stride=2, padding="same", depthwise=True),  # Conv2dSame
        create_conv2d(6, 6, 3, stride=1, dilation=2, padding="same", depthwise=True),
    ]


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("size", [(9, 9), (10, 7)])
def test_fast_module_matches_the_stock_one_with_gradients(index, size):
    torch.manual_seed(index)
    stock = _stock_depthwise_modules()[index].double()
    fast = copy.deepcopy(stock)
    assert speed_up_depthwise(fast) == 1 and type(fast) is DepthwiseConv2d
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    x_stock, x_fast = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_stock, out_fast = stock(x_stock), fast(x_fast)
    torch.testing.assert_close(out_fast, out_stock, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(out_stock)
    out_stock.backward(grad)
    out_fast.backward(grad)
    torch.testing.assert_close(x_fast.grad, x_stock.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast.weight.grad, stock.weight.grad, rtol=1e-12, atol=1e-12)


def test_under_bf16_autocast_the_depthwise_convolution_runs_in_float32():
    torch.manual_seed(0)
    stock = nn.Conv2d(8, 8, 5, padding=4, dilation=2, groups=8)
    fast = copy.deepcopy(stock)
    speed_up_depthwise(fast)
    x = torch.randn(2, 8, 12, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast(x.bfloat16())
    assert out.dtype == torch.float32
    # the input was rounded to bf16, the convolution itself is float32
    torch.testing.assert_close(out, stock(x.bfloat16().float()), rtol=1e-5, atol=1e-5)


def test_other_convolutions_are_left_alone():
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3),  # dense
        nn.Conv2d(8, 16, 3, groups=8),  # channel multiplier 2: not depthwise
        nn.Conv2d(16, 16, 3, groups=4),  # grouped
        create_conv2d(16, 16, 3, stride=2, padding="same", depthwise=True),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, padding_mode="reflect"),  # other padding
    )
    keys = list(model.state_dict())
    kinds = [type(m).__name__ for m in model]
    assert speed_up_depthwise(model) == 1
    assert [type(m).__name__ for m in model] == [*kinds[:3], "DepthwiseConv2d", kinds[4]]
    assert list(model.state_dict()) == keys
    assert speed_up_depthwise(model) == 0  # idempotent


def test_the_cpu_preset_segmenter_gets_the_fast_path_and_checkpoints_stay_compatible():
    overrides = ["model.pretrained=false"]
    model = build_segmenter(load_config("camvid/points", overrides), 11)
    fast = [m for m in model.modules() if type(m) is DepthwiseConv2d]
    assert len(fast) == 16  # every MBConv block of EfficientNet-Lite0
    assert sum(m.same_padding for m in fast) == 3  # its three stride-2 "SAME" convolutions
    stock = build_segmenter(
        load_config("camvid/points", [*overrides, "model.fast_depthwise=false"]), 11
    )
    assert not any(type(m) is DepthwiseConv2d for m in stock.modules())
    stock.load_state_dict(model.state_dict())  # same keys and shapes
    model.eval(), stock.eval()
    x = torch.randn(1, 3, 72, 88)
    with torch.no_grad():
        torch.testing.assert_close(model(x)["logits"], stock(x)["logits"], rtol=1e-4, atol=1e-4)
