"""A classifier trained with L_cls on image tags only gives CAM seeds that broken CAMs cannot match."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agmm.models import CAMHead
from agmm.seeds import SeedQuality, cam_loss, cam_seeds


def tagged_shapes(count: int, generator: torch.Generator, size: int = 32):
    """Noise images with a red square (class 1) and/or a green square (class 2); background 0.

    Returns images (N, 3, S, S), masks (N, S, S) int64, tags (N, 3) with the background tagged.
    """
    images = torch.randn(count, 3, size, size, generator=generator) * 0.3
    masks = torch.zeros(count, size, size, dtype=torch.int64)
    tags = torch.zeros(count, 3)
    tags[:, 0] = 1.0
    colours = {1: torch.tensor([2.0, -1.0, -1.0]), 2: torch.tensor([-1.0, 2.0, -1.0])}
    for index in range(count):
        for class_id, colour in colours.items():
            if torch.rand(1, generator=generator) < 0.6:
                side = int(torch.randint(8, 14, (1,), generator=generator))
                y, x = (int(v) for v in torch.randint(0, size - side, (2,), generator=generator))
                images[index, :, y : y + side, x : x + side] += colour[:, None, None]
                masks[index, y : y + side, x : x + side] = class_id
                tags[index, class_id] = 1.0
    return images, masks, tags


@pytest.mark.slow
def test_tags_only_training_gives_cam_seeds_well_above_chance():
    generator = torch.Generator().manual_seed(0)
    body = nn.Sequential(  # a tiny stand-in backbone: the CAM head, loss and seeds are under test
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1),
        nn.ReLU(),
    )
    head = CAMHead(in_channels=32, num_classes=3)
    optimizer = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=3e-3)
    for _ in range(50):
        images, _, tags = tagged_shapes(16, generator)
        cls_logits, _ = head(body(images))
        loss = cam_loss(cls_logits, tags, has_background=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    images, masks, tags = tagged_shapes(32, torch.Generator().manual_seed(99))
    with torch.no_grad():
        _, cams = head(body(images))
    precision = {}
    for name, maps in {
        "trained": cams,
        "random": torch.rand_like(cams),
        "constant": torch.ones_like(cams),
    }.items():
        quality = SeedQuality(3)
        quality.update(cam_seeds(maps, tags, image_size=(32, 32), has_background=True), masks)
        precision[name] = quality.precision_miou
    assert precision["trained"] > 0.6
    assert precision["trained"] > max(precision["random"], precision["constant"]) + 0.3


def test_seed_table_totals_keep_class_means_and_pixel_pools_apart():
    import numpy as np

    seeds = np.array([[0, 0, 0, 0], [0, 0, 1, 255]])  # every seed right; sign is half seeded
    masks = np.array([[0, 0, 0, 0], [0, 0, 1, 1]])
    quality = SeedQuality(2)
    quality.update(seeds, masks)
    table = quality.format_table(["road", "sign"])
    # class mean: IoU (100 + 100) / 2, coverage (6/6 + 1/2) / 2; all pixels: 7/7 right, 7/8 seeded
    assert "| **class mean** | **100.0** | **75.0** |" in table
    assert "| **all pixels** | 100.0 (pixel accuracy) | 87.5 |" in table
