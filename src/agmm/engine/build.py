"""The datasets of a training run, from its config."""

from __future__ import annotations

from torch.utils.data import Dataset

from agmm.config import Config
from agmm.data import build_dataset
from agmm.data.subset import FirstImages
from agmm.data.transforms import EvalTransform, TrainTransform


def build_train_dataset(cfg: Config) -> Dataset:
    """The training split with its weak labels and the random crop / scale / flip / jitter."""
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
