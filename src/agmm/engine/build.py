"""Build the pieces of a run from its config: model, GMM loss module, datasets."""

from __future__ import annotations

from torch import nn
from torch.utils.data import Dataset, Subset

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
        arch=cfg.model.arch,
        **cfg.model.model_args,
    )


def build_loss(cfg: Config, model: nn.Module, num_classes: int) -> nn.Module:
    """``AGMMLoss`` on the model's decoder features, with the keyword arguments of ``cfg.loss``."""
    from agmm.gmm.loss import AGMMLoss

    return AGMMLoss(
        in_channels=model.feature_channels, num_classes=num_classes, **cfg.loss.loss_kwargs()
    )


def build_train_dataset(cfg: Config) -> Dataset:
    """The training split with its weak labels and the random crop / scale / flip / jitter."""
    from agmm.data import build_dataset
    from agmm.data.transforms import TrainTransform

    transform = TrainTransform(
        crop_size=cfg.data.crop_size,
        scale_range=cfg.data.scale_range,
        hflip=cfg.data.hflip,
        color_jitter=cfg.data.color_jitter,
    )
    return build_dataset(
        cfg.data.name,
        root=cfg.data.root,
        split=cfg.data.train_split,
        supervision=cfg.data.supervision,
        weak_label_dir=cfg.data.weak_label_dir,
        weak_label_args=cfg.data.weak_label_args,
        transform=transform,
        seed=cfg.seed,
        **cfg.data.dataset_args,
    )


def build_val_dataset(cfg: Config) -> Dataset:
    """The validation split with dense masks (first ``eval.max_images`` images if set)."""
    from agmm.data import build_dataset
    from agmm.data.transforms import EvalTransform

    dataset = build_dataset(
        cfg.data.name,
        root=cfg.data.root,
        split=cfg.data.val_split,
        supervision="full",
        transform=EvalTransform(resize=cfg.data.eval_resize),
        seed=cfg.seed,
        **cfg.data.dataset_args,
    )
    if cfg.eval.max_images is not None and cfg.eval.max_images < len(dataset):
        dataset = FirstImages(dataset, cfg.eval.max_images)
    return dataset


class FirstImages(Subset):
    """The first ``count`` samples of a dataset, keeping its attributes (classes, palette, ...)."""

    def __init__(self, dataset: Dataset, count: int) -> None:
        super().__init__(dataset, range(count))

    def __getattr__(self, name: str):
        if name == "dataset":  # not yet set during unpickling
            raise AttributeError(name)
        return getattr(self.dataset, name)
