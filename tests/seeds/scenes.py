"""Hand-made images for the seed tests."""

from __future__ import annotations

import numpy as np


def synthetic_scene(seed: int = 0):
    """64×64 image: a noisy red rectangle (class 1) on a noisy blue-green background.

    Returns image (64, 64, 3) uint8, object mask (64, 64) bool, a box around the object.
    """
    rng = np.random.default_rng(seed)
    image = np.empty((64, 64, 3), np.float64)
    image[:] = (40, 120, 160)
    obj = np.zeros((64, 64), bool)
    obj[20:44, 16:40] = True
    image[obj] = (200, 40, 40)
    image += rng.normal(0, 12, image.shape)
    box = np.array([[10, 14, 46, 50, 1]], np.float32)  # a few pixels of margin around the object
    return np.clip(image, 0, 255).astype(np.uint8), obj, box
