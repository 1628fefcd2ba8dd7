"""A built-in dataset of textured shapes, for the README demo and fast tests (no download).

Each image is a cluttered background (smooth two-colour noise, random lines and noisy patches)
with 1..``max_objects`` objects pasted on it. Class 0 is the background; class k >= 1 has a
signature that a segmenter must learn from spatial structure: a shape (ellipse, rectangle,
triangle, blob) and a texture (stripes, checkers, dots, rings, grid, waves). Every colour, of
objects and background alike, is drawn from the same distribution, so colour alone does not
give the class away (a per-pixel colour classifier does no better than guessing the majority
class). Generated deterministically from ``(seed, name)`` in about a millisecond per image.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from agmm.data.datasets.base import Record, SegmentationDataset, name_seed
from agmm.data.palette import voc_palette

SHAPES = ("ellipse", "rectangle", "triangle", "blob")
TEXTURES = ("stripes", "checkers", "dots", "rings", "grid", "waves")
TEXTURE_PERIOD = {
    "stripes": 6.0,
    "checkers": 8.0,
    "dots": 7.0,
    "rings": 6.0,
    "grid": 7.0,
    "waves": 6.0,
}


def class_signature(class_id: int) -> tuple[str, str, float]:
    """(shape, texture, period scale) of an object class id >= 1."""
    index = class_id - 1
    return SHAPES[index % len(SHAPES)], TEXTURES[index % len(TEXTURES)], 1.0 + 0.5 * (index // 12)


def _colour_pair(rng: np.random.Generator, min_contrast: float = 70.0) -> np.ndarray:
    """Two RGB colours (2, 3) float32 from the shared colour distribution, at least min_contrast apart."""
    first = rng.uniform(0, 255, size=3)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction) + 1e-6
    second = (first + direction * rng.uniform(min_contrast, 160)).clip(0, 255)
    if np.linalg.norm(second - first) < min_contrast:  # clipped against the cube: go the other way
        second = (first - direction * rng.uniform(min_contrast, 160)).clip(0, 255)
    pair = np.stack([first, second]).astype(np.float32)
    return pair[rng.permutation(2)]


def _rotated(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, angle: float):
    cos, sin = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    return dx * cos + dy * sin, -dx * sin + dy * cos


def _shape_mask(shape: str, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """(H, W) bool region of one object."""
    height, width = yy.shape
    size = min(height, width)
    cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
    a, b = rng.uniform(0.12, 0.3, size=2) * size
    angle = rng.uniform(0, np.pi)
    u, v = _rotated(yy, xx, cy, cx, angle)
    if shape == "ellipse":
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if shape == "rectangle":
        return (np.abs(u) <= a) & (np.abs(v) <= b * 0.8)
    if shape == "triangle":
        corners = angle + np.array([0.0, 2.1, 4.2]) + rng.uniform(-0.25, 0.25, size=3)
        radius = max(a, b) * 1.2
        vy, vx = cy + radius * np.sin(corners), cx + radius * np.cos(corners)
        inside = np.ones_like(yy, dtype=bool)
        for i in range(3):  # three half-planes
            j = (i + 1) % 3
            edge = (vx[j] - vx[i]) * (yy - vy[i]) - (vy[j] - vy[i]) * (xx - vx[i])
            inside &= edge >= 0
        if not inside.any():  # vertices came out clockwise
            inside = np.ones_like(yy, dtype=bool)
            for i in range(3):
                j = (i + 1) % 3
                inside &= (vx[j] - vx[i]) * (yy - vy[i]) - (vy[j] - vy[i]) * (xx - vx[i]) <= 0
        return inside
    # blob: a wobbly star-convex outline
    phase = rng.uniform(0, 2 * np.pi, size=2)
    theta = np.arctan2(v, u)
    radius = max(a, b) * (
        1 + 0.25 * np.sin(3 * theta + phase[0]) + 0.15 * np.sin(5 * theta + phase[1])
    )
    return u**2 + v**2 <= radius**2


def _texture(
    texture: str, scale: float, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """(H, W) float32 in {0, 1}: which of the object's two colours each pixel takes."""
    period = TEXTURE_PERIOD[texture] * scale
    cy, cx = rng.uniform(0, yy.shape[0]), rng.uniform(0, yy.shape[1])
    u, v = _rotated(yy, xx, cy, cx, rng.uniform(0, np.pi))
    if texture == "stripes":
        pattern = np.mod(u, period) < period / 2
    elif texture == "checkers":
        pattern = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    elif texture == "dots":
        du, dv = np.mod(u, period) - period / 2, np.mod(v, period) - period / 2
        pattern = du**2 + dv**2 < (period / 3) ** 2
    elif texture == "rings":
        pattern = np.mod(np.sqrt(u**2 + v**2), period) < period / 2
    elif texture == "grid":
        pattern = (np.mod(u, period) < 1.6) | (np.mod(v, period) < 1.6)
    else:  # waves
        pattern = np.mod(u + 3.0 * np.sin(2 * np.pi * v / (2.5 * period)), period) < period / 2
    return pattern.astype(np.float32)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 cluttered background: smooth noise between two colours + lines + patches."""
    colours = _colour_pair(rng)
    coarse = rng.random((height // 12 + 2, width // 12 + 2)).astype(np.float32)
    blend = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)[..., None]
    image = np.ascontiguousarray(colours[0] * (1 - blend) + colours[1] * blend)
    for _ in range(int(rng.integers(3, 9))):  # clutter: random lines
        p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        cv2.line(image, p0, p1, colour, thickness=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(1, 4))):  # clutter: patches of fine random noise
        h, w = (int(v) for v in rng.integers(6, max(7, min(height, width) // 4), size=2))
        top, left = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        pair = _colour_pair(rng)
        noise = rng.random((h, w, 1)).astype(np.float32)
        image[top : top + h, left : left + w] = pair[0] * (1 - noise) + pair[1] * noise
    return image


def generate_image(
    rng: np.random.Generator, image_size: tuple[int, int], num_classes: int, max_objects: int = 4
) -> dict:
    """One synthetic image: image (H, W, 3) uint8, mask (H, W) uint8, instance_mask (H, W) int32."""
    height, width = image_size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = _background(rng, height, width)
    mask = np.zeros((height, width), dtype=np.uint8)
    instances = np.zeros((height, width), dtype=np.int32)
    for number in range(1, int(rng.integers(1, max_objects + 1)) + 1):
        class_id = int(rng.integers(1, num_classes))
        shape, texture, scale = class_signature(class_id)
        region = _shape_mask(shape, rng, yy, xx)
        pattern = _texture(texture, scale, rng, yy, xx)[..., None]
        colours = _colour_pair(rng)
        painted = colours[0] * (1 - pattern) + colours[1] * pattern
        image[region] = painted[region]
        mask[region] = class_id
        instances[region] = number
    image += rng.normal(0, 6, size=image.shape).astype(np.float32)
    return {"image": image.clip(0, 255).astype(np.uint8), "mask": mask, "instance_mask": instances}


class SyntheticShapes(SegmentationDataset):
    """Procedural textured-shapes dataset (registered as ``"synthetic"``; ``root`` is ignored).

    Args: num_images, image_size (H, W), num_classes (incl. background, >= 2), seed (images
    and weak-label simulation), max_objects per image; the other keyword arguments
    (split, supervision, weak_label_dir, ...) are those of every dataset. Splits with
    different names hold different images.
    """

    has_background = True
    generated = True  # images are made in read_raw, not read from files

    def __init__(
        self,
        num_images: int = 64,
        image_size: tuple[int, int] = (96, 128),
        num_classes: int = 5,
        seed: int = 0,
        *,
        split: str = "train",
        root: str | Path | None = None,
        max_objects: int = 4,
        **kwargs,
    ) -> None:
        if num_classes < 2:
            raise ValueError(
                f"SyntheticShapes needs num_classes >= 2 (background + one), not {num_classes}"
            )
        self.num_images = int(num_images)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.max_objects = int(max_objects)
        self.classes = ["background"] + [
            f"{shape}_{texture}" + (f"_x{scale:g}" if scale != 1 else "")
            for shape, texture, scale in map(class_signature, range(1, num_classes))
        ]
        self.palette = voc_palette(num_classes)
        super().__init__(root=root, split=split, seed=seed, **kwargs)

    def _scan(self) -> list[Record]:
        return [
            Record(
                name=f"synthetic_{self.split}_{i:05d}",
                image_path=Path(f"<synthetic>/{self.split}/{i:05d}.png"),
            )
            for i in range(self.num_images)
        ]

    def _check_files(self, records: list[Record]) -> list[Record]:
        return records  # generated, nothing on disk

    def _drop_unreadable(self, records, kinds):
        return records, kinds

    def read_raw(self, index: int) -> dict:
        record = self.records[index]
        rng = np.random.default_rng(name_seed(self.seed, "image:" + record.name))
        return generate_image(rng, self.image_size, self.num_classes, self.max_objects)

    def _read_instances(self, record: Record, mask: np.ndarray | None) -> np.ndarray | None:
        return None  # read_raw already returns instance_mask
