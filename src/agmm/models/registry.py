"""``build_model(name, ...)`` over the plain dict ``MODELS`` (name -> builder)."""

from __future__ import annotations

import os

from torch import nn

from agmm.errors import ConfigError
from agmm.models.adapters import build_smp, build_torchvision, build_transformers
from agmm.models.deeplabv3plus import build_deeplabv3plus
from agmm.models.depthwise import speed_up_depthwise
from agmm.models.vit import build_vit

MODELS = {
    "deeplabv3plus": build_deeplabv3plus,
    "vit": build_vit,
    "smp": build_smp,
    "torchvision": build_torchvision,
    "transformers": build_transformers,
}
# The library families take ``arch`` (which of their architectures); our own models do not.
FAMILIES = ("smp", "torchvision", "transformers")


def build_model(
    name: str,
    *,
    num_classes: int,
    backbone: str | None = None,
    pretrained: bool | str | os.PathLike = False,
    output_stride: int | None = 16,
    cls_head: bool = False,
    arch: str | None = None,
    fast_depthwise: bool = True,
    **kwargs,
) -> nn.Module:
    """Build a segmenter by name.

    Args:
        name: a key of ``MODELS``: ``deeplabv3plus``, ``vit``, or a library family (``smp``,
            ``torchvision``, ``transformers``: ``agmm.models.adapters``, docs/byom.md).
        num_classes: K.
        backbone: timm name; ``None`` = the model's default (``resnet101`` / ``vit_base_patch16_224``).
            For the families: the smp encoder, the torchvision backbone, the transformers Hub id.
        pretrained: ``False``, ``True`` (timm weights by name) or a path to a local state-dict file.
        output_stride: 8 or 16 for DeepLabV3+; a ViT's stride is its patch size (16; ``None`` accepted).
        cls_head: add the classification branch (``cls_logits``, ``cams``) for image tags.
        arch: the architecture within a family (smp ``unet``, torchvision ``lraspp``, ...);
            ``None`` = the family's default; must be ``None`` for ``deeplabv3plus`` and ``vit``.
        fast_depthwise: give the depthwise convolutions the CPU fast path of
            :mod:`agmm.models.depthwise` (the same maths in float32 and channels_last; 1.2-1.3x
            faster EfficientNet training steps in bf16 + channels_last).
        **kwargs: model-specific keyword arguments (e.g. ``decoder_channels``, ``neck_channels``).

    Returns:
        a module whose ``forward(images (B, 3, H, W))`` returns ``{"logits": (B, K, H, W),
        "features": (B, C, h, w)[, "cls_logits": (B, K), "cams": (B, K, h', w')]}``, with
        ``feature_channels == C`` and ``parameter_groups()``.
    """
    if name not in MODELS:
        raise ConfigError(f"model.name: unknown model {name!r}; valid names: {sorted(MODELS)}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"model.num_classes must be a positive integer, got {num_classes!r}")
    if name in FAMILIES:
        kwargs["arch"] = arch
    elif arch is not None:
        raise ConfigError(f"model.arch: only for {', '.join(FAMILIES)}; {name} has none (set null)")
    model = MODELS[name](
        num_classes=num_classes,
        backbone=backbone,
        pretrained=pretrained,
        output_stride=output_stride,
        cls_head=cls_head,
        **kwargs,
    )
    if fast_depthwise:
        speed_up_depthwise(model)
    return model
