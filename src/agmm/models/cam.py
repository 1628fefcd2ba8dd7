"""ToCo-style classification branch: image-level scores and online class activation maps (CAMs).

Global average pooling then a bias-free 1×1 convolution gives the image scores; the same 1×1
convolution applied at every position gives the CAMs. Because both maps are linear, the spatial mean
of ``cams`` equals ``cls_logits`` (the classic CAM identity).
"""

from __future__ import annotations

import torch
from torch import nn


class CAMHead(nn.Module):
    """``forward(features (B, C, h, w)) -> (cls_logits (B, K), cams (B, K, h, w))``."""

    def __init__(self, *, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.01)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = features.mean(dim=(2, 3), keepdim=True)
        cls_logits = self.classifier(pooled).flatten(1)
        cams = self.classifier(features)
        return cls_logits, cams
