"""Joint augmentation of an image with its weak label, dense mask and boxes.

Transforms take and return the numpy sample ``{image: (H, W, 3) uint8, weak_label: (H, W),
mask: (H, W), boxes: (M, 5) float32 [x0, y0, x1, y1, class_id]}``; `to_tensor_sample` then
turns it into tensors with the image normalised by ImageNet mean/std. Images are resized
bilinearly, labels by exact nearest neighbour (pixel-centre aligned, so a label pixel stays on
its image pixel), crops pad images with 0 and labels with 255, and boxes move, clip and drop
with the pixels. Randomness comes from a ``numpy.random.Generator`` passed in, or else is drawn
from torch's global generator (seeded per DataLoader worker), so runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from agmm.runtime.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD

_LABEL_KEYS = ("weak_label", "mask")


def _as_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _generator(rng: np.random.Generator | torch.Generator | None) -> np.random.Generator:
    """A numpy generator: the one given, one seeded from a torch generator, or from torch's global one."""
    if isinstance(rng, np.random.Generator):
        return rng
    seed = torch.randint(0, 2**62, (1,), generator=rng).item()
    return np.random.default_rng(seed)


def resize_image(image: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (H, W, 3) uint8 to out_hw."""
    if image.shape[:2] == tuple(out_hw):
        return image
    interpolation = cv2.INTER_AREA if out_hw[0] < image.shape[0] / 2 else cv2.INTER_LINEAR
    return cv2.resize(image, (out_hw[1], out_hw[0]), interpolation=interpolation)


def resize_label(
    label: np.ndarray, out_hw: tuple[int, int], *, keep_sparse: bool = False
) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) label map to out_hw (pixel-centre aligned).

    With ``keep_sparse`` no labeled pixel is lost when shrinking: a labeled pixel that nearest
    neighbour would skip is written at its own position in the output (if that spot is unlabeled),
    so that a single clicked point survives any downscaling.
    """
    if label.shape[:2] == tuple(out_hw):
        return label
    out = cv2.resize(label, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_NEAREST_EXACT)
    if keep_sparse and (out_hw[0] < label.shape[0] or out_hw[1] < label.shape[1]):
        ys, xs = np.nonzero(label != IGNORE_INDEX)
        ty = np.minimum(((ys + 0.5) * out_hw[0] / label.shape[0]).astype(np.int64), out_hw[0] - 1)
        tx = np.minimum(((xs + 0.5) * out_hw[1] / label.shape[1]).astype(np.int64), out_hw[1] - 1)
        free = out[ty, tx] == IGNORE_INDEX
        out[ty[free], tx[free]] = label[ys[free], xs[free]]
    return out


def _resize_sample(sample: dict, out_hw: tuple[int, int]) -> dict:
    height, width = sample["image"].shape[:2]
    out = dict(sample)
    out["image"] = resize_image(sample["image"], out_hw)
    for key in _LABEL_KEYS:
        if sample.get(key) is not None:
            out[key] = resize_label(sample[key], out_hw, keep_sparse=key == "weak_label")
    boxes = (
        np.asarray(sample.get("boxes", np.zeros((0, 5))), dtype=np.float32).reshape(-1, 5).copy()
    )
    boxes[:, [0, 2]] *= out_hw[1] / width
    boxes[:, [1, 3]] *= out_hw[0] / height
    out["boxes"] = boxes
    return out


def _pad_sample(sample: dict, min_hw: tuple[int, int]) -> dict:
    """Pad bottom/right to at least min_hw: image with 0, labels with 255."""
    height, width = sample["image"].shape[:2]
    pad_h, pad_w = max(min_hw[0] - height, 0), max(min_hw[1] - width, 0)
    if pad_h == 0 and pad_w == 0:
        return sample
    out = dict(sample)
    out["image"] = np.pad(sample["image"], ((0, pad_h), (0, pad_w), (0, 0)))
    for key in _LABEL_KEYS:
        if sample.get(key) is not None:
            out[key] = np.pad(sample[key], ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
    return out


def _crop_sample(sample: dict, top: int, left: int, crop_hw: tuple[int, int]) -> dict:
    bottom, right = top + crop_hw[0], left + crop_hw[1]
    out = dict(sample)
    out["image"] = sample["image"][top:bottom, left:right]
    for key in _LABEL_KEYS:
        if sample.get(key) is not None:
            out[key] = sample[key][top:bottom, left:right]
    out["boxes"] = crop_boxes(sample["boxes"], top=top, left=left, crop_hw=crop_hw)
    return out


def crop_boxes(boxes: np.ndarray, *, top: int, left: int, crop_hw: tuple[int, int]) -> np.ndarray:
    """Shift (M, 5) boxes into a crop window, clip them to it, drop the ones left empty."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 5).copy()
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - left).clip(0, crop_hw[1])
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - top).clip(0, crop_hw[0])
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep]


def hflip_sample(sample: dict) -> dict:
    """Mirror image, labels and boxes left-right."""
    width = sample["image"].shape[1]
    out = dict(sample)
    out["image"] = np.ascontiguousarray(sample["image"][:, ::-1])
    for key in _LABEL_KEYS:
        if sample.get(key) is not None:
            out[key] = np.ascontiguousarray(sample[key][:, ::-1])
    boxes = np.asarray(sample["boxes"], dtype=np.float32).reshape(-1, 5).copy()
    boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    out["boxes"] = boxes
    return out


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation, each a factor in [1 - s, 1 + s]. (H, W, 3) uint8."""
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, size=3)
    pixels = image.astype(np.float32) * brightness
    grey = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    pixels = (pixels - grey.mean()) * contrast + grey.mean()
    grey = (pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    pixels = (pixels - grey) * saturation + grey
    return pixels.clip(0, 255).astype(np.uint8)


def _with_boxes(sample: dict) -> dict:
    out = dict(sample)
    out["boxes"] = np.asarray(sample.get("boxes", np.zeros((0, 5))), dtype=np.float32).reshape(
        -1, 5
    )
    return out


@dataclass
class TrainTransform:
    """Random scale, pad-and-crop to ``crop_size`` (H, W or an int), flip and colour jitter.

    ``crop_size=None`` keeps the scaled image whole. Output image (crop_h, crop_w, 3) uint8.
    """

    crop_size: int | tuple[int, int] | None
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    color_jitter: float = 0.2

    def __call__(
        self, sample: dict, rng: np.random.Generator | torch.Generator | None = None
    ) -> dict:
        rng = _generator(rng)
        sample = _with_boxes(sample)
        height, width = sample["image"].shape[:2]
        scale = rng.uniform(*self.scale_range)
        if scale != 1.0:
            out_hw = (max(1, round(height * scale)), max(1, round(width * scale)))
            sample = _resize_sample(sample, out_hw)
        if self.crop_size is not None:
            crop_hw = _as_hw(self.crop_size)
            sample = _pad_sample(sample, crop_hw)
            height, width = sample["image"].shape[:2]
            top = int(rng.integers(0, height - crop_hw[0] + 1))
            left = int(rng.integers(0, width - crop_hw[1] + 1))
            sample = _crop_sample(sample, top, left, crop_hw)
        if self.hflip and rng.random() < 0.5:
            sample = hflip_sample(sample)
        if self.color_jitter > 0:
            sample["image"] = color_jitter(sample["image"], self.color_jitter, rng)
        return sample


@dataclass
class EvalTransform:
    """Optional deterministic resize: ``resize`` int = shorter side, or (H, W); None = unchanged.

    Labels are resized with nearest neighbour (weak labels keep every labeled pixel).
    """

    resize: int | tuple[int, int] | None = None

    def __call__(self, sample: dict, rng: object = None) -> dict:
        sample = _with_boxes(sample)
        if self.resize is None:
            return sample
        height, width = sample["image"].shape[:2]
        if isinstance(self.resize, int):
            scale = self.resize / min(height, width)
            out_hw = (max(1, round(height * scale)), max(1, round(width * scale)))
        else:
            out_hw = _as_hw(self.resize)
        return _resize_sample(sample, out_hw)


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 normalised with ImageNet mean/std."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return tensor.sub_(mean).div_(std)


def denormalize_image(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) normalised tensor -> (H, W, 3) uint8 (for pictures)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = (image.detach().cpu().float() * std + mean).clamp(0, 1).mul(255).round()
    return pixels.byte().permute(1, 2, 0).numpy()


def to_tensor_sample(sample: dict) -> dict:
    """The numpy sample -> tensors: image (3, H, W) float32 normalised, labels (H, W) int64,
    boxes (M, 5) float32. Other keys (tags, name, ...) pass through unchanged."""
    out = dict(sample)
    out["image"] = normalize_image(sample["image"])
    height, width = sample["image"].shape[:2]
    for key in _LABEL_KEYS:
        label = sample.get(key)
        if label is None:
            out[key] = torch.full((height, width), IGNORE_INDEX, dtype=torch.int64)
        else:
            out[key] = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))
    boxes = np.asarray(sample.get("boxes", np.zeros((0, 5))), dtype=np.float32).reshape(-1, 5)
    out["boxes"] = torch.from_numpy(np.ascontiguousarray(boxes))
    return out
