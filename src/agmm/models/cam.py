"""ToCo-style classification branch: image-level scores and online class activation maps (CAMs).

Global pooling then a bias-free 1×1 convolution gives the image scores; the same 1×1 convolution
applied at every position gives the CAMs. With average pooling (the default), both maps are linear,
so the spatial mean of ``cams`` equals ``cls_logits`` (the classic CAM identity). ToCo's released
ViT model pools the patch tokens with global *max* pooling (``F.adaptive_max_pool2d`` in
``model/model_seg_neg.py`` of github.com/rulixiang/ToCo): ``pooling="max"`` does the same.
"""

from __future__ import annotations

import torch
from torch import nn

from agmm.errors import ConfigError

POOLINGS = ("avg", "max")


class CAMHead(nn.Module):
    """``forward(features (B, C, h, w)) -> (cls_logits (B, K), cams (B, K, h, w))``."""

    def __init__(self, *, in_channels: int, num_classes: int, pooling: str = "avg") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"model.cam_pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling = pooling
        self.classifier = nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.01)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pooling == "avg":
            pooled = features.mean(dim=(2, 3), keepdim=True)
        else:
            pooled = features.amax(dim=(2, 3), keepdim=True)
        cls_logits = self.classifier(pooled).flatten(1)
        cams = self.classifier(features)
        return cls_logits, cams
