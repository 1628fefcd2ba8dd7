"""Exact segmentation metrics from a confusion matrix (mIoU, per-class IoU, pixel accuracy).

The matrix is accumulated with one ``torch.bincount`` per update, so it is exact (integer counts)
and can be summed across processes: ``all_reduce()`` makes every DDP rank hold the full-dataset
matrix, and the metrics computed from it equal the single-process numbers.

Conventions: rows are the true class, columns the predicted class. Pixels whose target is
``ignore_index`` (255) are skipped. A class absent from both the targets and the predictions
has an undefined IoU (0 / 0): it is reported as NaN and left out of the mean. A class that is
predicted but never present in the targets has IoU 0 and *does* count in the mean.
"""

from __future__ import annotations

import numpy as np
import torch

from agmm.runtime.accumulator import Accumulator
from agmm.runtime.constants import IGNORE_INDEX


class ConfusionMatrix(Accumulator):
    """Accumulates a (K, K) int64 confusion matrix; rows = ground truth, columns = prediction.

    >>> cm = ConfusionMatrix(num_classes=3)
    >>> cm.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 255]))
    >>> cm.miou()
    1.0
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, device=None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        # One extra column counts pixels predicted outside 0..K-1 (e.g. 255 = "no prediction"):
        # they are false negatives of their true class but no class's false positive.
        self._counts = self.add_state(
            "counts",
            torch.zeros((self.num_classes, self.num_classes + 1), dtype=torch.int64, device=device),
        )

    @property
    def matrix(self) -> torch.Tensor:
        """(K, K) int64 counts: ``matrix[t, p]`` = pixels of true class t predicted as p."""
        return self._counts[:, : self.num_classes]

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Adds one batch. ``pred``, ``target``: integer tensors of the same shape, e.g. (B, H, W).

        Target pixels equal to ``ignore_index`` are skipped; other target values must lie in
        ``0..K-1``. Predictions outside ``0..K-1`` count as wrong for the pixel's true class.
        """
        pred = torch.as_tensor(pred)
        target = torch.as_tensor(target)
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}"
            )
        device = self._counts.device
        pred = pred.to(device, torch.int64).reshape(-1)
        target = target.to(device, torch.int64).reshape(-1)
        valid = target != self.ignore_index
        pred, target = pred[valid], target[valid]
        k = self.num_classes
        out_of_range = (target < 0) | (target >= k)
        if out_of_range.any():
            raise ValueError(
                f"target has value {target[out_of_range][0].item()} but there are {k} classes "
                f"({self.ignore_index} = ignore)"
            )
        pred = torch.where((pred >= 0) & (pred < k), pred, torch.full_like(pred, k))
        counts = torch.bincount(target * (k + 1) + pred, minlength=k * (k + 1))
        self._counts += counts.reshape(k, k + 1)

    def per_class_iou(self) -> np.ndarray:
        """(K,) float64 IoU = TP / (TP + FP + FN); NaN for classes absent from pred and target."""
        counts = self._counts.double().cpu()
        tp = counts.diagonal()
        union = counts.sum(dim=1) + counts[:, : self.num_classes].sum(dim=0) - tp
        return (tp / union).numpy()  # 0 / 0 -> NaN: the class is absent from both

    def miou(self) -> float:
        """Mean IoU over the classes whose IoU is defined (NaN if none is)."""
        iou = self.per_class_iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        """Correct pixels / valid pixels (NaN if there is no valid pixel)."""
        total = self._counts.sum().item()
        return self._counts.diagonal().sum().item() / total if total else float("nan")

    def class_accuracy(self) -> np.ndarray:
        """(K,) float64 recall per class: TP / pixels of that class (NaN if the class is absent)."""
        counts = self._counts.double().cpu()
        return (counts.diagonal() / counts.sum(dim=1)).numpy()

    def summary(self, classes: list[str] | None = None) -> dict:
        """JSON-ready dict: miou, pixel_acc, per_class_iou ({name: IoU or None}), confusion."""
        names = classes or [str(k) for k in range(self.num_classes)]
        iou = self.per_class_iou()
        return {
            "miou": self.miou(),
            "pixel_acc": self.pixel_accuracy(),
            "per_class_iou": {
                name: (None if np.isnan(v) else float(v)) for name, v in zip(names, iou)
            },
            "confusion": self.matrix.cpu().tolist(),
        }
