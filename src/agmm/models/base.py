"""What every segmenter shares: the output dict and the backbone / new-layer parameter groups."""

from __future__ import annotations

import torch
from torch import nn

from agmm.models.pretrained import input_renormalization


class Segmenter(nn.Module):
    """Base class: subclasses set ``self.backbone`` (pretrained part) and the other (new) layers.

    Attributes every segmenter has: ``num_classes``, ``feature_channels`` (C of ``features``),
    ``feature_stride`` (input size / feature size), ``backbone_name``.
    """

    num_classes: int
    feature_channels: int
    feature_stride: int
    backbone_name: str
    backbone: nn.Module

    def set_input_normalization(self) -> None:
        """Adapt our ImageNet-normalised input to ``self.backbone``'s own (see
        :func:`agmm.models.pretrained.input_renormalization`); a no-op for ResNets."""
        renorm = input_renormalization(self.backbone)
        scale, shift = (None, None) if renorm is None else (t.view(1, 3, 1, 1) for t in renorm)
        # Not persistent: derived from the backbone name, so checkpoints stay as they were.
        self.register_buffer("input_scale", scale, persistent=False)
        self.register_buffer("input_shift", shift, persistent=False)

    def backbone_input(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (B, 3, H, W) as the backbone expects them."""
        if getattr(self, "input_scale", None) is None:
            return images
        return images * self.input_scale.to(images.dtype) + self.input_shift.to(images.dtype)

    def parameter_groups(
        self, *, backbone_lr_mult: float = 1.0, head_lr_mult: float = 10.0
    ) -> list[dict]:
        """``[{"params": backbone, "lr_mult": 1.0}, {"params": new layers, "lr_mult": 10.0}]``.

        Every trainable parameter is in exactly one group.
        """
        backbone_ids = {id(p) for p in self.backbone.parameters()}
        backbone_params = [p for p in self.backbone.parameters() if p.requires_grad]
        head_params = [
            p for p in self.parameters() if p.requires_grad and id(p) not in backbone_ids
        ]
        return [
            {"params": backbone_params, "lr_mult": backbone_lr_mult},
            {"params": head_params, "lr_mult": head_lr_mult},
        ]


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1):
    """Conv (no bias) + BatchNorm + ReLU, 'same' padding."""
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )
