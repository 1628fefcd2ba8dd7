"""Fixtures of the picture tests: a tiny synthetic dataset and a pointwise stand-in segmenter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn


class PointwiseSegmenter(nn.Module):
    """1x1 convs for logits and 8-channel 'decoder features' at half resolution."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, num_classes, 1)
        self.embed = nn.Conv2d(3, 8, 1)
        self.feature_channels = 8

    def forward(self, images):
        features = self.embed(nn.functional.avg_pool2d(images, 2))
        return {"logits": self.head(images), "features": features}


@pytest.fixture
def shapes():
    from agmm.data import build_dataset

    return build_dataset(
        "synthetic",
        root=None,
        split="train",
        supervision="points",
        weak_label_args={"points_per_class": 5},
        num_images=3,
        image_size=(48, 64),
        num_classes=4,
    )


@pytest.fixture
def segmenter(shapes):
    torch.manual_seed(0)
    return PointwiseSegmenter(shapes.num_classes).eval()


def assert_is_a_picture(path, *, min_size=(100, 100), min_colours=20, min_std=10.0):
    """The PNG exists, is at least min_size (W, H), and is not a blank canvas."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[1] >= min_size[0] and pixels.shape[0] >= min_size[1], pixels.shape
    assert pixels.std() > min_std, "image is (nearly) uniform"
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) >= min_colours, f"only {len(colours)} distinct colours"
    return pixels


@pytest.fixture
def check_picture():
    return assert_is_a_picture


def _write_log(path, steps=30):
    """A metrics.jsonl like the engine's, ending in a truncated line."""
    with open(path, "w") as handle:
        for step in range(0, steps * 10, 10):
            record = {
                "step": step,
                "train/loss": 2.0 * np.exp(-step / 100) + 0.1,
                "train/seg": 1.0 * np.exp(-step / 80) + 0.05,
                "train/self": 0.5 * np.exp(-step / 120) + 0.02,
                "lr": 0.01 * (1 - step / 400),
                "images_per_s": 12.0,
            }
            if step % 50 == 0:
                record.update({"val/miou": 0.2 + step / 600, "pseudo/gmm_miou": 0.3 + step / 700})
            handle.write(json.dumps(record) + "\n")
        handle.write('{"step": 300, "train/lo')  # a run killed mid-write


@pytest.fixture
def write_log():
    return _write_log
