"""Batching samples of different sizes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agmm.runtime.constants import IGNORE_INDEX


def collate_batch(samples: list[dict]) -> dict:
    """Stack dataset samples into a batch, padding to the largest H and W.

    Returns ``image`` (B, 3, H, W) padded with 0, ``weak_label`` and ``mask`` (B, H, W) int64
    padded with 255, ``valid_mask`` (B, H, W) bool (False on padding), ``tags`` (B, K) float32,
    and ``boxes`` (list of (M_i, 5)), ``name``, ``supervision``, ``image_path`` as lists.
    """
    if not samples:
        raise ValueError("collate_batch needs at least one sample")
    height = max(s["image"].shape[-2] for s in samples)
    width = max(s["image"].shape[-1] for s in samples)

    def pad(tensor: torch.Tensor, value: float) -> torch.Tensor:
        pad_h, pad_w = height - tensor.shape[-2], width - tensor.shape[-1]
        if pad_h == 0 and pad_w == 0:
            return tensor
        return F.pad(tensor, (0, pad_w, 0, pad_h), value=value)

    batch = {
        "image": torch.stack([pad(s["image"], 0.0) for s in samples]),
        "weak_label": torch.stack([pad(s["weak_label"], IGNORE_INDEX) for s in samples]),
        "mask": torch.stack([pad(s["mask"], IGNORE_INDEX) for s in samples]),
        "valid_mask": torch.stack(
            [pad(torch.ones(s["image"].shape[-2:], dtype=torch.bool), False) for s in samples]
        ),
        "tags": torch.stack([s["tags"] for s in samples]),
        "boxes": [s["boxes"] for s in samples],
    }
    for key in ("name", "supervision", "image_path"):
        batch[key] = [s.get(key) for s in samples]
    return batch
