"""Segmentation models that expose the decoder features the GMM needs.

``build_model(name, *, num_classes, backbone=None, pretrained=False, output_stride=16,
cls_head=False, arch=None, **kw)`` from ``MODELS = {"deeplabv3plus": ..., "vit": ..., "smp": ...,
"torchvision": ..., "transformers": ...}``; ``adapt(model)`` wraps a model that
segmentation_models_pytorch, torchvision or transformers built. ``model(images)`` returns
``{"logits", "features"[, "coarse_logits", "cls_logits", "cams"]}`` (see docs/models.md, docs/byom.md).
``build_segmenter(cfg, K)`` builds a run's model from its config, ``load_model(checkpoint)``
rebuilds it from a checkpoint.
"""

from agmm.models.adapters import AdaptedSegmenter, adapt
from agmm.models.build import build_segmenter, load_model
from agmm.models.cam import CAMHead
from agmm.models.deeplabv3plus import DeepLabV3Plus, build_deeplabv3plus
from agmm.models.registry import MODELS, build_model
from agmm.models.vit import ViTSegmenter, build_vit

__all__ = [
    "MODELS",
    "AdaptedSegmenter",
    "CAMHead",
    "DeepLabV3Plus",
    "ViTSegmenter",
    "adapt",
    "build_deeplabv3plus",
    "build_model",
    "build_segmenter",
    "build_vit",
    "load_model",
]
