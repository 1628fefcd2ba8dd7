"""Segmentation models that expose the decoder features the GMM needs.

``build_model(name, *, num_classes, backbone=None, pretrained=False, output_stride=16,
cls_head=False, **kw)`` from ``MODELS = {"deeplabv3plus": ..., "vit": ...}``; ``model(images)``
returns ``{"logits", "features"[, "cls_logits", "cams"]}`` (see docs/models.md).
"""

from agmm.models.cam import CAMHead
from agmm.models.deeplabv3plus import DeepLabV3Plus, build_deeplabv3plus
from agmm.models.registry import MODELS, build_model
from agmm.models.vit import ViTSegmenter, build_vit

__all__ = [
    "MODELS",
    "CAMHead",
    "DeepLabV3Plus",
    "ViTSegmenter",
    "build_deeplabv3plus",
    "build_model",
    "build_vit",
]
