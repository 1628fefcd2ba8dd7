"""Colour tables for label maps."""

from __future__ import annotations

import numpy as np


def voc_palette(num_colours: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (bit-interleaved class ids). Returns (num_colours, 3) uint8."""
    ids = np.arange(num_colours)
    palette = np.zeros((num_colours, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            palette[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
    return palette.astype(np.uint8)
