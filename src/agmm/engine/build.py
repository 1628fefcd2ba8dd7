"""Build the pieces of a run from its config: model, GMM loss module, datasets."""

from __future__ import annotations

from torch import nn

from agmm.config import Config


def build_segmenter(
    cfg: Config, num_classes: int, *, pretrained: bool | str | None = None
) -> nn.Module:
    """The segmenter of ``cfg.model`` for ``num_classes`` classes (``pretrained`` overrides the config)."""
    from agmm.models import build_model

    return build_model(
        cfg.model.name,
        num_classes=num_classes,
        backbone=cfg.model.backbone,
        pretrained=cfg.model.pretrained if pretrained is None else pretrained,
        output_stride=cfg.model.output_stride,
        cls_head=cfg.use_cls_head,
        **cfg.model.model_args,
    )


def build_loss(cfg: Config, model: nn.Module, num_classes: int) -> nn.Module:
    """``AGMMLoss`` on the model's decoder features, with the keyword arguments of ``cfg.loss``."""
    from agmm.gmm.loss import AGMMLoss

    return AGMMLoss(
        in_channels=model.feature_channels, num_classes=num_classes, **cfg.loss.loss_kwargs()
    )
