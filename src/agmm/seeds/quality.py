"""How good are seeds? Precision (mIoU on the seeded pixels) and coverage, against dense masks."""

from __future__ import annotations

import numpy as np
import torch

from agmm.runtime.constants import IGNORE_INDEX


def _as_numpy(array) -> np.ndarray:
    return array.detach().cpu().numpy() if torch.is_tensor(array) else np.asarray(array)


class SeedQuality:
    """Accumulates seed statistics over images; exact (integer counts).

    - ``per_class_iou``: IoU of seeds vs. masks over the pixels that are seeded (seed != 255) and
      have a ground truth (mask != 255); ``precision_miou`` is its mean over classes present there.
    - ``per_class_coverage``: fraction of each class's ground-truth pixels that carry a seed
      (any seed); ``coverage``: the same over all valid pixels.
    """

    def __init__(self, num_classes: int, *, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), np.int64)  # [true, seed]
        self.class_pixels = np.zeros(num_classes, np.int64)
        self.seeded_class_pixels = np.zeros(num_classes, np.int64)

    def update(self, seeds, masks) -> None:
        """seeds, masks: same shape, e.g. (H, W) or (B, H, W), class ids with ``ignore_index``."""
        seeds, masks = _as_numpy(seeds).astype(np.int64), _as_numpy(masks).astype(np.int64)
        if seeds.shape != masks.shape:
            raise ValueError(f"seeds {seeds.shape} and masks {masks.shape} differ in shape")
        k = self.num_classes
        valid = (masks >= 0) & (masks < k)
        seeded = valid & (seeds >= 0) & (seeds < k)
        self.class_pixels += np.bincount(masks[valid], minlength=k)[:k]
        self.seeded_class_pixels += np.bincount(masks[seeded], minlength=k)[:k]
        pairs = masks[seeded] * k + seeds[seeded]
        self.confusion += np.bincount(pairs, minlength=k * k).reshape(k, k)

    def merge(self, other: SeedQuality) -> SeedQuality:
        self.confusion += other.confusion
        self.class_pixels += other.class_pixels
        self.seeded_class_pixels += other.seeded_class_pixels
        return self

    @property
    def per_class_iou(self) -> np.ndarray:
        """(K,) float64; NaN for a class absent from both seeds and masks on the seeded pixels."""
        true_positive = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - true_positive
        with np.errstate(invalid="ignore", divide="ignore"):
            return true_positive / union

    @property
    def precision_miou(self) -> float:
        iou = self.per_class_iou
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    @property
    def pixel_precision(self) -> float:
        """Fraction of seeded (valid) pixels whose seed is right."""
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    @property
    def per_class_coverage(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.seeded_class_pixels / self.class_pixels.astype(np.float64)

    @property
    def coverage(self) -> float:
        total = self.class_pixels.sum()
        return float(self.seeded_class_pixels.sum() / total) if total else float("nan")

    @property
    def mean_coverage(self) -> float:
        """Mean of ``per_class_coverage`` over the classes present in the masks."""
        coverage = self.per_class_coverage
        return float(np.nanmean(coverage)) if np.isfinite(coverage).any() else float("nan")

    @property
    def has_data(self) -> bool:
        return bool(self.class_pixels.sum())

    def summary(self, classes: list[str] | None = None) -> dict:
        names = classes or [str(i) for i in range(self.num_classes)]
        return {
            "precision_miou": self.precision_miou,
            "pixel_precision": self.pixel_precision,
            "coverage": self.coverage,
            "per_class_iou": dict(zip(names, self.per_class_iou.tolist())),
            "per_class_coverage": dict(zip(names, self.per_class_coverage.tolist())),
        }

    def format_table(self, classes: list[str] | None = None) -> str:
        """A markdown table: one row per class (IoU on seeded pixels, coverage), then the mean over
        classes (mIoU, mean coverage) and the figures pooled over all pixels (the fraction of
        seeded pixels that are right, the fraction of valid pixels seeded)."""
        names = classes or [str(i) for i in range(self.num_classes)]

        def pct(value: float) -> str:
            return "-" if not np.isfinite(value) else f"{100 * value:.1f}"

        rows = ["| class | precision IoU (%) | coverage (%) |", "|---|---|---|"]
        for name, iou, cover in zip(names, self.per_class_iou, self.per_class_coverage):
            rows.append(f"| {name} | {pct(iou)} | {pct(cover)} |")
        rows.append(
            f"| **class mean** | **{pct(self.precision_miou)}** | **{pct(self.mean_coverage)}** |"
        )
        rows.append(
            f"| **all pixels** | {pct(self.pixel_precision)} (pixel accuracy) "
            f"| {pct(self.coverage)} |"
        )
        return "\n".join(rows)


def seed_quality(seeds, masks, num_classes: int, *, ignore_index: int = IGNORE_INDEX) -> dict:
    """One-shot :class:`SeedQuality` summary of seeds vs. masks (same shapes)."""
    quality = SeedQuality(num_classes, ignore_index=ignore_index)
    quality.update(seeds, masks)
    return quality.summary()
