"""collate_batch pads variable-size samples and marks the padding."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from agmm.data import build_dataset, collate_batch


def fake_sample(height: int, width: int, name: str, boxes: int) -> dict:
    return {
        "image": torch.ones(3, height, width),
        "weak_label": torch.full((height, width), 2, dtype=torch.int64),
        "mask": torch.ones(height, width, dtype=torch.int64),
        "tags": torch.tensor([0.0, 1.0, 1.0]),
        "boxes": torch.zeros(boxes, 5),
        "supervision": "points",
        "name": name,
        "image_path": f"/x/{name}.jpg",
    }


def test_collate_pads_images_with_zero_and_labels_with_255():
    batch = collate_batch([fake_sample(4, 6, "a", 0), fake_sample(5, 3, "b", 2)])
    assert batch["image"].shape == (2, 3, 5, 6)
    assert (
        batch["weak_label"].shape == batch["mask"].shape == batch["valid_mask"].shape == (2, 5, 6)
    )
    assert (batch["image"][0, :, 4:] == 0).all() and (batch["image"][1, :, :, 3:] == 0).all()
    assert (batch["weak_label"][0, 4:] == 255).all() and (batch["mask"][1, :, 3:] == 255).all()
    assert batch["valid_mask"][0, :4, :6].all() and not batch["valid_mask"][0, 4:].any()
    assert batch["valid_mask"].sum() == 4 * 6 + 5 * 3
    assert batch["tags"].shape == (2, 3)
    assert [b.shape[0] for b in batch["boxes"]] == [0, 2]
    assert batch["name"] == ["a", "b"] and batch["supervision"] == ["points", "points"]
    assert batch["image_path"] == ["/x/a.jpg", "/x/b.jpg"]


def test_a_dataloader_batches_dataset_samples():
    dataset = build_dataset(
        "synthetic", root=None, split="train", num_images=4, supervision="boxes"
    )
    batch = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_batch)))
    assert batch["image"].shape == (4, 3, 96, 128) and batch["valid_mask"].all()
    assert len(batch["boxes"]) == 4 and batch["supervision"] == ["boxes"] * 4
