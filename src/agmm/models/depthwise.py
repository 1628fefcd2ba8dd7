"""Depthwise convolutions that are fast on CPUs: float32, channels_last, dilation as space-to-batch.

EfficientNet's depthwise convolutions are most of a CPU training step (bench/train_speed.py,
docs/training.md "Speed"), and oneDNN is slow on three of their cases:

- in bf16 (autocast): the weight gradient is 2-7x slower than in float32;
- in NCHW: forward and backward are 2-10x slower than in channels_last;
- dilated (the last stage at output stride 16): the backward is 3-4x slower than undilated.

:func:`speed_up_depthwise` swaps every depthwise ``nn.Conv2d`` of a model (timm's ``Conv2dSame``
included) for :class:`DepthwiseConv2d`, which on a CPU runs the convolution in float32 and
channels_last whatever the autocast dtype, and a dilated one as an undilated convolution on the
``d x d`` interleaved sub-grids of its input (space-to-batch, exact). Parameters, buffers and
state-dict keys are untouched, so checkpoints load either way; on other devices the module is the
plain convolution it replaced. ``model.fast_depthwise=false`` keeps the stock modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers.conv2d_same import conv2d_same
from timm.layers.padding import pad_same
from torch import nn


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (``groups == in_channels == out_channels``) with the CPU fast path.

    ``same_padding=True`` pads like TensorFlow's "SAME" at run time (timm's ``Conv2dSame``).
    """

    same_padding: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or _exporting():  # exactly the module it replaced
            if self.same_padding:
                return conv2d_same(
                    x, self.weight, self.bias, self.stride, (0, 0), self.dilation, self.groups
                )
            return super().forward(x)
        if self.same_padding:
            x = pad_same(x, self.kernel_size, self.stride, self.dilation)
        padding = (0, 0) if self.same_padding else self.padding
        if isinstance(padding, str):
            return super().forward(x)
        with torch.autocast("cpu", enabled=False):
            x = x.to(self.weight.dtype).contiguous(memory_format=torch.channels_last)
            if self.dilation != (1, 1) and self.stride == (1, 1):
                return _space_to_batch_conv(x, self.weight, self.bias, padding, self.dilation)
            return F.conv2d(
                x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups
            )


def _exporting() -> bool:
    """ONNX / torch.export / TorchScript tracing: they get the stock convolution."""
    return (
        torch.onnx.is_in_onnx_export()
        or torch.compiler.is_exporting()
        or torch.jit.is_tracing()
        or torch.jit.is_scripting()
    )


def is_depthwise(module: nn.Module) -> bool:
    """True for a 2-D convolution with one filter per input channel (and no channel multiplier)."""
    return (
        isinstance(module, nn.Conv2d)
        and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
        and module.padding_mode == "zeros"
    )


def speed_up_depthwise(model: nn.Module) -> int:
    """Turn every depthwise convolution of ``model`` into a :class:`DepthwiseConv2d` (in place).

    Only plain ``nn.Conv2d`` and timm's ``Conv2dSame`` are swapped (other subclasses may compute
    something else). Returns how many were swapped.
    """
    swapped = 0
    for module in model.modules():
        if not is_depthwise(module) or type(module) is DepthwiseConv2d:
            continue
        kind = type(module).__name__
        if type(module) is not nn.Conv2d and kind != "Conv2dSame":
            continue
        module.__class__ = DepthwiseConv2d
        module.same_padding = kind == "Conv2dSame"
        swapped += 1
    return swapped


def _space_to_batch_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    """A stride-1 dilated depthwise convolution as an undilated one on the dilation's sub-grids.

    Output pixel (y, x) only reads input pixels (y + i dy, x + j dx), i.e. its own residue class
    (y mod dy, x mod dx): each of the dy x dx sub-grids is an image of its own, convolved with the
    same kernel undilated. The input is zero-padded up to a multiple of the dilation first; those
    zeros are the zeros the padding would have read, and the extra outputs are cropped.
    """
    batch, channels, height, width = x.shape
    (pad_y, pad_x), (dil_y, dil_x) = padding, dilation
    k_y, k_x = weight.shape[-2:]
    out_h = height + 2 * pad_y - dil_y * (k_y - 1)
    out_w = width + 2 * pad_x - dil_x * (k_x - 1)
    # Offsets of the output grid relative to the input, per axis: output y reads y - pad + i * d.
    # On the sub-grid the conv needs pad / d cells of padding, exact when pad is a multiple of d.
    if pad_y % dil_y or pad_x % dil_x:
        return F.conv2d(x, weight, bias, 1, padding, dilation, channels)
    rows = -(-max(height, out_h) // dil_y) * dil_y
    cols = -(-max(width, out_w) // dil_x) * dil_x
    x = F.pad(x, (0, cols - width, 0, rows - height))
    sub_h, sub_w = rows // dil_y, cols // dil_x
    # (B, C, sub_h, dy, sub_w, dx) -> (B, dy, dx, C, sub_h, sub_w): the sub-grids as a batch,
    # laid out channels-last in memory (B dy dx, sub_h, sub_w, C).
    grids = x.view(batch, channels, sub_h, dil_y, sub_w, dil_x).permute(0, 3, 5, 2, 4, 1)
    grids = grids.reshape(batch * dil_y * dil_x, sub_h, sub_w, channels).permute(0, 3, 1, 2)
    out = F.conv2d(grids, weight, bias, 1, (pad_y // dil_y, pad_x // dil_x), 1, channels)
    out_sub_h, out_sub_w = out.shape[-2:]
    out = out.permute(0, 2, 3, 1).reshape(batch, dil_y, dil_x, out_sub_h, out_sub_w, channels)
    out = out.permute(0, 5, 3, 1, 4, 2).reshape(batch, channels, out_sub_h * dil_y, -1)
    return out[:, :, :out_h, :out_w].contiguous(memory_format=torch.channels_last)
