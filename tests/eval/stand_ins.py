"""Tiny stand-ins for the model and dataset, so eval tests do not depend on other packages."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

PALETTE = np.array([[0, 0, 0], [200, 30, 30], [30, 200, 30], [30, 30, 200]], dtype=np.uint8)


class PointwiseSegmenter(nn.Module):
    """A 1x1 conv: flip-equivariant and local, so sliding windows change nothing."""

    def __init__(self, num_classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, num_classes, 1)
        self.feature_channels = 3

    def forward(self, images):
        return {"logits": self.conv(images), "features": images}


def make_sample(image: torch.Tensor, mask: torch.Tensor, name: str, num_classes: int) -> dict:
    return {
        "image": image,
        "mask": mask,
        "weak_label": torch.full_like(mask, 255),
        "tags": torch.zeros(num_classes),
        "boxes": torch.zeros(0, 5),
        "supervision": "full",
        "name": name,
        "image_path": f"images/{name}.jpg",
    }


class TinyDataset(torch.utils.data.Dataset):
    """Random images whose masks are a given model's predictions with some pixels ignored/flipped."""

    classes = ["background", "red", "green", "blue"]
    num_classes = 4
    has_background = True
    palette = PALETTE
    ignore_index = 255

    def __init__(self, model=None, num_images=5, size=(12, 16), noise=0.0, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.samples = []
        for index in range(num_images):
            image = torch.randn(3, *size, generator=g)
            if model is not None:
                with torch.no_grad():
                    mask = model(image[None])["logits"][0].argmax(0)
            else:
                mask = torch.randint(0, self.num_classes, size, generator=g)
            flip = torch.rand(size, generator=g) < noise
            mask = torch.where(flip, (mask + 1) % self.num_classes, mask)
            mask[torch.rand(size, generator=g) < 0.1] = 255
            self.samples.append(make_sample(image, mask, f"img{index:02d}", self.num_classes))

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return dict(self.samples[index])
