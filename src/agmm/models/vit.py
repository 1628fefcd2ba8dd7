"""A plain ViT segmenter: timm ViT patch tokens -> light conv neck -> 1×1 classifier.

Any input size works: images are zero-padded (bottom/right) to a multiple of the patch size, the
position embeddings are interpolated by timm (``dynamic_img_size=True``), and the logits are cropped
back to the input size. ``features`` are at the patch stride (1/16 for the ``patch16`` models).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from agmm.errors import ConfigError
from agmm.models.base import Segmenter, conv_bn_relu
from agmm.models.cam import CAMHead
from agmm.models.pretrained import create_backbone

# Tested and documented backbones (ViT-B/16 is the paper's); other timm ViT names also work.
VITS = ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224")


class ViTSegmenter(Segmenter):
    """``forward(images (B, 3, H, W)) -> dict`` (see :mod:`agmm.models`).

    ``features``: (B, 256, ceil(H/p), ceil(W/p)), p = patch size (16): the neck's output, covering
    the padded image.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        backbone: str = "vit_base_patch16_224",
        pretrained: bool | str | os.PathLike = False,
        output_stride: int | None = None,
        cls_head: bool = False,
        cam_pooling: str = "avg",
        neck_channels: int = 256,
        img_size: int | None = None,
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        extra = {"img_size": img_size} if img_size else {}
        self.backbone = create_backbone(
            backbone,
            pretrained,
            num_classes=0,
            global_pool="",
            dynamic_img_size=True,
            drop_path_rate=drop_path_rate,
            **extra,
        )
        self.set_input_normalization()  # timm's augreg ViTs expect mean = std = 0.5
        patch = self.backbone.patch_embed.patch_size
        self.patch_size = patch[0] if isinstance(patch, (tuple, list)) else int(patch)
        if output_stride not in (None, self.patch_size):
            raise ConfigError(
                f"model.output_stride: a ViT's features are at its patch stride "
                f"{self.patch_size}; got output_stride={output_stride}"
            )
        self.num_classes = num_classes
        self.backbone_name = backbone
        self.feature_stride = self.patch_size
        self.feature_channels = neck_channels
        embed_dim = self.backbone.embed_dim
        self.neck = nn.Sequential(
            conv_bn_relu(embed_dim, neck_channels, 1),
            conv_bn_relu(neck_channels, neck_channels, 3),
        )
        self.classifier = nn.Conv2d(neck_channels, num_classes, 1)
        self.cam_head = (
            CAMHead(in_channels=embed_dim, num_classes=num_classes, pooling=cam_pooling)
            if cls_head
            else None
        )

    def patch_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> patch tokens as a map (B, D, ceil(H/p), ceil(W/p))."""
        images = self.backbone_input(images)
        height, width = images.shape[2:]
        grid_h, grid_w = math.ceil(height / self.patch_size), math.ceil(width / self.patch_size)
        pad_h, pad_w = grid_h * self.patch_size - height, grid_w * self.patch_size - width
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))  # 0 = the mean colour after normalisation
        tokens = self.backbone.forward_features(images)[:, self.backbone.num_prefix_tokens :]
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, grid_h, grid_w)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        height, width = images.shape[2:]
        tokens = self.patch_features(images)
        features = self.neck(tokens)
        padded_size = (features.shape[2] * self.patch_size, features.shape[3] * self.patch_size)
        coarse_logits = self.classifier(features)
        logits = F.interpolate(
            coarse_logits, size=padded_size, mode="bilinear", align_corners=False
        )[:, :, :height, :width]
        out = {"logits": logits, "features": features}
        if padded_size == (height, width):  # logits = exactly their bilinear upsampling
            out["coarse_logits"] = coarse_logits
        if self.cam_head is not None:
            out["cls_logits"], out["cams"] = self.cam_head(tokens)
        return out


def build_vit(
    *,
    num_classes: int,
    backbone: str | None = None,
    pretrained: bool | str | os.PathLike = False,
    output_stride: int | None = None,
    cls_head: bool = False,
    **kwargs,
) -> ViTSegmenter:
    """ViT segmenter; ``backbone`` defaults to ``vit_base_patch16_224`` (the paper's ViT-B/16)."""
    return ViTSegmenter(
        num_classes=num_classes,
        backbone=backbone or "vit_base_patch16_224",
        pretrained=pretrained,
        output_stride=output_stride,
        cls_head=cls_head,
        **kwargs,
    )
