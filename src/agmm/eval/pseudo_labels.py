"""Pseudo labels for multi-stage training ("MT") and the quality of every kind of label.

``write_pseudo_labels`` saves a trained model's (optionally CRF-refined) predictions on a
training split as label PNGs, which a second stage reads as its weak labels
(``data.weak_label_dir``). ``PseudoLabelQuality`` measures, against the true masks, how good the
weak labels, the GMM predictions G (before/after OEM) and the segmenter P are (paper Table 8,
Fig. 10); the engine updates it from training batches, ``pseudo_label_quality`` runs it on a
dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from agmm.eval.inference import (
    checked_collate,
    iterate_predictions,
    model_device,
    rank_shard,
    unpadded_size,
)
from agmm.eval.metrics import ConfusionMatrix
from agmm.eval.predict import save_label_png
from agmm.runtime.accumulator import Accumulator
from agmm.runtime.constants import IGNORE_INDEX
from agmm.runtime.distributed import sum_over_ranks

SOURCES = ("weak", "gmm_old", "gmm_new", "seg")
# What each source is scored from: weak labels, G before / after OEM, L_self's target, P.
ALL_SOURCES = ("weak", "gmm_old", "gmm_new", "self_target", "seg")


def gmm_to_labels(
    gmm_probs: torch.Tensor,
    size: tuple[int, int],
    present: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Arg-max labels (B, H, W) of G (B, K, h, w), bilinearly resized to ``size``.

    Only classes present in the image compete (G is 0 for the others, and may underflow to 0 for
    present ones far from their centre); an image without any present class gets ``ignore_index``.
    ``present``: (B, K) bool; inferred as "G is not all zero" when None.
    """
    if present is None:
        present = gmm_probs.flatten(2).amax(dim=2) > 0
    gmm_probs = F.interpolate(gmm_probs.float(), size=size, mode="bilinear", align_corners=False)
    scores = gmm_probs.masked_fill(~present[:, :, None, None], float("-inf"))
    labels = scores.max(dim=1).indices  # = argmax(dim=1), ~10x faster on NCHW CPU tensors
    return labels.masked_fill(~present.any(dim=1)[:, None, None], ignore_index)


class PseudoLabelQuality(Accumulator):
    """Accumulates the quality of weak labels, G_old, G_new and P against true masks.

    ``compute()`` returns floats (NaN where nothing was measured):
    ``weak_coverage`` (labeled / valid mask pixels), ``weak_miou`` and ``weak_pixel_acc`` (weak
    labels on their labeled pixels only), ``gmm_old_miou``, ``gmm_new_miou``, ``seg_miou`` (arg-max
    maps on every valid mask pixel) and the matching ``*_pixel_acc``. DDP: call ``all_reduce()``
    before ``compute()``.

    ``sources``: which of :data:`ALL_SOURCES` to score (``self_target``: L_self's target maps,
    scored like G); ``device``: where the counts live (default CPU; the training loop keeps them
    on its GPU).
    """

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = IGNORE_INDEX,
        *,
        sources: tuple[str, ...] = SOURCES,
        device=None,
    ) -> None:
        super().__init__()
        unknown = sorted(set(sources) - set(ALL_SOURCES))
        if unknown:
            raise ValueError(f"unknown sources {unknown}; valid: {', '.join(ALL_SOURCES)}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.confusion = {
            name: self.add_state(name, ConfusionMatrix(num_classes, ignore_index, device=device))
            for name in sources
        }
        # labeled pixels, valid mask pixels
        self.counts = self.add_state("counts", torch.zeros(2, dtype=torch.int64, device=device))

    @torch.no_grad()
    def update(
        self,
        masks: torch.Tensor,
        *,
        weak_labels: torch.Tensor | None = None,
        logits: torch.Tensor | None = None,
        gmm_old: torch.Tensor | None = None,
        gmm_new: torch.Tensor | None = None,
        self_target: torch.Tensor | None = None,
        present: torch.Tensor | None = None,
    ) -> None:
        """Adds a batch. masks, weak_labels: (B, H, W) ids (255 = ignore / unlabeled);
        logits: (B, K, H, W) scores or probabilities of P; gmm_old, gmm_new, self_target:
        (B, K, h, w) G-like maps; present: (B, K) bool classes with a mixture component (see
        :func:`gmm_to_labels`). Sources not being scored are ignored.
        """
        device = self.device
        masks = masks.detach().to(device)
        size = tuple(masks.shape[-2:])
        if weak_labels is not None and "weak" in self.confusion:
            weak_labels = weak_labels.detach().to(device)
            labeled = weak_labels != self.ignore_index
            valid = masks != self.ignore_index
            self.counts += torch.stack([(labeled & valid).sum(), valid.sum()])
            self.confusion["weak"].update(
                weak_labels, masks.masked_fill(~labeled, self.ignore_index)
            )
        present = present.detach().to(device) if present is not None else None
        maps = (("gmm_old", gmm_old), ("gmm_new", gmm_new), ("self_target", self_target))
        for name, gmm in maps:
            if gmm is not None and name in self.confusion:
                labels = gmm_to_labels(gmm.detach().to(device), size, present, self.ignore_index)
                self.confusion[name].update(labels, masks)
        if logits is not None and "seg" in self.confusion:
            self.confusion["seg"].update(logits.detach().max(dim=1).indices.to(device), masks)

    def compute(self) -> dict[str, float]:
        labeled, valid = self.counts.tolist()
        result = {"weak_coverage": labeled / valid if valid else float("nan")}
        for name, matrix in self.confusion.items():
            result[f"{name}_miou"] = matrix.miou()
            result[f"{name}_pixel_acc"] = matrix.pixel_accuracy()
        return result


@torch.no_grad()
def pseudo_label_quality(
    model: nn.Module,
    dataset: Dataset,
    *,
    loss_module: nn.Module | None = None,
    batch_size: int = 1,
    device=None,
    max_images: int | None = None,
    progress: bool = True,
    resize: int | None = None,
) -> dict[str, float]:
    """Quality of the weak labels, G (with ``loss_module``, an ``AGMMLoss``) and P on ``dataset``.

    ``dataset`` gives ``image``, ``weak_label`` and dense ``mask`` (use the training split with a
    deterministic transform). Every label is scored at the sample's own size; ``resize``: the
    model sees each image with its shorter side resized to this many pixels and its logits are
    resized back (weak labels and masks are never resized, so exact weak labels score 100 %).
    The model runs once per image at a single scale; G comes from
    ``loss_module.fit_gmm(features, weak_labels, valid_mask)``. Returns
    :meth:`PseudoLabelQuality.compute` plus ``num_images``. DDP-aware like ``evaluate``.
    """
    num_classes = int(dataset.num_classes)
    if max_images is not None and max_images < len(dataset):
        dataset = Subset(dataset, range(max_images))
    sampler, is_main = rank_shard(dataset)
    device = torch.device(device) if device is not None else model_device(model)
    quality = PseudoLabelQuality(num_classes)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=checked_collate)
    modules = [model] + ([loss_module] if loss_module is not None else [])
    modes = [m.training for m in modules]
    for module in modules:
        module.eval()
    num_images = 0
    try:
        show = progress and is_main
        for batch in tqdm(loader, desc="pseudo-label quality", disable=not show, unit="batch"):
            images = batch["image"].to(device)
            weak_labels = batch["weak_label"].to(device)
            size = tuple(images.shape[-2:])
            if resize:
                scale = resize / min(size)
                images = F.interpolate(
                    images,
                    size=(max(1, round(size[0] * scale)), max(1, round(size[1] * scale))),
                    mode="bilinear",
                    align_corners=False,
                )
            out = model(images)  # {"logits": (B, K, h', w'), "features": (B, C, h, w), ...}
            logits = out["logits"]
            if tuple(logits.shape[-2:]) != size:
                logits = F.interpolate(
                    logits.float(), size=size, mode="bilinear", align_corners=False
                )
            gmm = {}
            if loss_module is not None:
                fitted = loss_module.fit_gmm(
                    out["features"], weak_labels, batch["valid_mask"].to(device)
                )
                gmm = {k: fitted[k] for k in ("gmm_old", "gmm_new", "present")}
            quality.update(batch["mask"], weak_labels=weak_labels, logits=logits, **gmm)
            num_images += images.shape[0]
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)
    quality.all_reduce()
    return {**quality.compute(), "num_images": sum_over_ranks(num_images)}


def write_pseudo_labels(
    model: nn.Module,
    dataset: Dataset,
    out_dir: str | Path,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    sliding: int | tuple[int, int] | dict | None = None,
    crf: dict | bool | None = None,
    keep_weak_labels: bool = True,
    palette: np.ndarray | None = None,
    batch_size: int = 1,
    device=None,
    progress: bool = True,
    resize: int | None = None,
) -> dict:
    """Writes ``out_dir/<name>.png``: the model's arg-max prediction for every dataset image,
    at the size of the dataset's sample (give a dataset without a resizing transform so that a
    next stage can read the labels beside its images). ``resize``: the model sees each image with
    its shorter side resized to this many pixels; its probabilities are resized back.

    With ``keep_weak_labels`` the sample's weak label overrides the prediction where it labels a
    pixel (points, scribbles and blocks are exact). ``scales``/``flip``/``sliding``/``crf`` as in
    :func:`agmm.eval.inference.evaluate`. Returns ``dict(out_dir, num_images, miou, pixel_acc)``,
    the last two measured against the dataset's masks (NaN when it has none). DDP-aware: each
    rank writes its own shard.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    palette = palette if palette is not None else getattr(dataset, "palette", None)
    sampler, is_main = rank_shard(dataset)
    confusion = ConfusionMatrix(int(dataset.num_classes))
    num_images = 0
    for batch, probs in iterate_predictions(
        model,
        dataset,
        scales=scales,
        flip=flip,
        sliding=sliding,
        crf=crf,
        batch_size=batch_size,
        device=device,
        progress=progress and is_main,
        sampler=sampler,
        desc="pseudo-labels",
        resize=resize,
    ):
        labels = probs.max(dim=1).indices.cpu()
        if keep_weak_labels:
            weak = batch["weak_label"]
            labels = torch.where(weak != IGNORE_INDEX, weak, labels)
        for i, name in enumerate(batch["name"]):
            height, width = unpadded_size(batch["valid_mask"][i])
            label = labels[i, :height, :width]
            confusion.update(label, batch["mask"][i, :height, :width])
            save_label_png(label.numpy(), out_dir / f"{name}.png", palette)
        num_images += len(batch["name"])
    confusion.all_reduce()
    return {
        "out_dir": str(out_dir),
        "num_images": sum_over_ranks(num_images),
        "miou": confusion.miou(),
        "pixel_acc": confusion.pixel_accuracy(),
    }
