"""A tiny synthetic run that trains in seconds on a CPU (tests only)."""

from __future__ import annotations

import pytest

from agmm.config import load_config

TINY = [
    "data.name=synthetic",
    "data.supervision=points",
    "data.weak_label_args={points_per_class: 3}",
    "data.dataset_args={num_images: 8, image_size: [32, 32], num_classes: 3}",
    "data.crop_size=32",
    "data.scale_range=[0.75, 1.25]",
    "data.num_workers=0",
    "model.backbone=resnet18",
    "model.pretrained=false",
    "model.output_stride=16",
    "model.model_args={aspp_channels: 16, decoder_channels: 16, low_level_channels: 8}",
    "loss.embed_dim=8",
    "train.batch_size=2",
    "train.lr=0.01",
    "train.head_lr_mult=1.0",
    "train.steps=8",
    "train.log_every=2",
    "train.val_every=0",
    "train.checkpoint_every=4",
    "train.progress_bar=false",
    "train.tensorboard=false",
    "eval.max_images=2",
    "eval.batch_size=2",
]


@pytest.fixture
def tiny_config(tmp_path):
    """``tiny_config(*overrides)`` -> a Config writing to a fresh folder under tmp_path."""
    counter = iter(range(1000))

    def make(*overrides: str):
        run_dir = tmp_path / f"run{next(counter)}"
        return load_config(None, [*TINY, f"output_dir={run_dir}", *overrides])

    return make


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, 2 threads per test process oversubscribe
    the cores and make these tiny runs several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
