"""Inference of the plain segmenter (the GMM is training-only) and dataset evaluation.

``predict_logits`` implements the usual test protocol of the paper: multi-scale inputs
(e.g. 0.5 ... 1.75) and horizontal flips, whose softmax probabilities are averaged at the input
resolution, and a sliding window for images too large to run at once (Cityscapes).
``evaluate`` runs it over a dataset into an exact, DDP-aware :class:`ConfusionMatrix`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from agmm.data.collate import collate_batch
from agmm.data.transforms import denormalize_image
from agmm.errors import LabelError
from agmm.eval.crf import crf_refine
from agmm.eval.metrics import ConfusionMatrix
from agmm.runtime import distributed
from agmm.runtime.constants import IGNORE_INDEX


def forward_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Runs the model on images (B, 3, H, W); returns logits (B, K, H, W) at input resolution.

    Accepts models returning the library's dict (``out["logits"]``) or a plain tensor.
    """
    out = model(images)
    logits = out["logits"] if isinstance(out, dict) else out
    if logits.shape[-2:] != images.shape[-2:]:
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return logits


def _window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Start offsets of windows of length ``crop`` covering ``0..size`` (last one flush right)."""
    if size <= crop:
        return [0]
    count = math.ceil((size - crop) / stride) + 1
    return sorted({min(i * stride, size - crop) for i in range(count)})


def sliding_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    crop: tuple[int, int],
    stride: tuple[int, int],
    windows_per_batch: int = 4,
) -> torch.Tensor:
    """Logits (B, K, H, W) from overlapping crops (h, w) at the given stride, averaged where they overlap.

    Crops never leave the image: the last window in each direction ends at the border; an image
    smaller than the crop is run whole. All windows have the same size, so up to
    ``windows_per_batch`` of them run in one forward pass.
    """
    batch, _, height, width = images.shape
    crop_h, crop_w = min(crop[0], height), min(crop[1], width)
    stride_h, stride_w = stride
    if min(crop_h, crop_w, stride_h, stride_w) < 1:
        raise ValueError(f"sliding crop {crop} and stride {stride} must be positive")
    corners = [
        (top, left)
        for top in _window_starts(height, crop_h, stride_h)
        for left in _window_starts(width, crop_w, stride_w)
    ]
    logits_sum = None
    counts = images.new_zeros((1, 1, height, width))
    for first in range(0, len(corners), windows_per_batch):
        chunk = corners[first : first + windows_per_batch]
        windows = torch.cat(
            [images[..., top : top + crop_h, left : left + crop_w] for top, left in chunk]
        )
        logits = forward_logits(model, windows)  # (len(chunk) * B, K, crop_h, crop_w)
        if logits_sum is None:
            logits_sum = images.new_zeros((batch, logits.shape[1], height, width))
        for (top, left), window in zip(chunk, logits.split(batch)):
            logits_sum[..., top : top + crop_h, left : left + crop_w] += window
            counts[..., top : top + crop_h, left : left + crop_w] += 1
    return logits_sum / counts


def sliding_options(sliding) -> dict | None:
    """Normalises ``sliding`` to ``dict(crop=(h, w), stride=(h, w))`` or None.

    Accepts None/0, an int crop size or an (h, w) crop (stride = 2/3 of the crop, i.e. windows
    overlap by a third), or ``dict(crop=..., stride=...)`` (ints or pairs).
    """
    if not sliding:
        return None
    if isinstance(sliding, dict):
        crop, stride = sliding["crop"], sliding.get("stride")
    else:
        crop, stride = sliding, None
    crop = (int(crop), int(crop)) if isinstance(crop, int | float) else tuple(map(int, crop))
    if stride is None:
        stride = tuple(max(1, (2 * c) // 3) for c in crop)
    elif isinstance(stride, int | float):
        stride = (int(stride), int(stride))
    return {"crop": crop, "stride": tuple(map(int, stride))}


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    sliding: int | tuple[int, int] | dict | None = None,
    num_classes: int | None = None,
) -> torch.Tensor:
    """Test-time prediction of a batch ``images`` (B, 3, H, W), normalised.

    Returns averaged softmax *probabilities* (B, K, H, W) at input resolution (despite the name,
    which the architecture contract fixes): for every scale s the image is resized bilinearly to
    (round(s·H), round(s·W)), run (through ``sliding_logits`` when ``sliding=dict(crop=(h, w),
    stride=(h, w))`` or a crop size, see :func:`sliding_options`; the crop is in pixels of the
    resized image), its logits are resized back to
    (H, W) and soft-maxed; with ``flip`` the horizontally flipped image is run too and its output
    flipped back. The mean over the ``len(scales) * (1 + flip)`` runs is returned.
    """
    if not scales:
        raise ValueError("scales must name at least one scale, e.g. (1.0,)")
    height, width = images.shape[-2:]

    window = sliding_options(sliding)

    def run(batch: torch.Tensor) -> torch.Tensor:
        if window:
            return sliding_logits(model, batch, **window)
        return forward_logits(model, batch)

    probs_sum = None
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = images
        if size != (height, width):
            scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        for flipped in (False, True) if flip else (False,):
            batch = scaled.flip(-1) if flipped else scaled
            logits = run(batch)
            if flipped:
                logits = logits.flip(-1)
            if logits.shape[-2:] != (height, width):
                logits = F.interpolate(
                    logits, size=(height, width), mode="bilinear", align_corners=False
                )
            probs = logits.float().softmax(dim=1)
            probs_sum = probs if probs_sum is None else probs_sum + probs
    probs = probs_sum / (len(scales) * (2 if flip else 1))
    if num_classes is not None and probs.shape[1] != num_classes:
        raise ValueError(f"model predicts {probs.shape[1]} classes, expected {num_classes}")
    return probs


def resized_scales(
    scales: Sequence[float], image_hw: tuple[int, int], resize: int | None
) -> tuple[float, ...]:
    """``scales`` relative to an image resized so that its shorter side is ``resize`` pixels.

    ``predict_logits(images, scales=resized_scales(scales, (H, W), resize))`` runs the model on
    the resized image (as ``EvalTransform(resize)`` would give it) and returns probabilities at
    the image's own size (H, W). ``resize`` None or 0: ``scales`` unchanged.
    """
    if not resize:
        return tuple(scales)
    factor = resize / min(image_hw)
    return tuple(scale * factor for scale in scales)


def predict_at_own_size(
    model: nn.Module,
    images: torch.Tensor,
    image_hws: Sequence[tuple[int, int]],
    *,
    resize: int | None,
    **options,
) -> torch.Tensor:
    """Probabilities (B, K, H, W) of a padded batch (B, 3, H, W) whose image i is ``image_hws[i]``
    (top-left), each predicted with its shorter side resized to ``resize`` and returned at its own
    size; padding gets probability 0. ``options``: scales, flip, sliding of :func:`predict_logits`.
    """
    scales = options.pop("scales", (1.0,))
    height, width = images.shape[-2:]
    if all(tuple(hw) == (height, width) for hw in image_hws):
        return predict_logits(
            model, images, scales=resized_scales(scales, (height, width), resize), **options
        )
    probs = None
    for i, (image_h, image_w) in enumerate(image_hws):  # images of different sizes: one by one
        one = predict_logits(
            model,
            images[i : i + 1, :, :image_h, :image_w],
            scales=resized_scales(scales, (image_h, image_w), resize),
            **options,
        )
        if probs is None:
            probs = one.new_zeros((images.shape[0], one.shape[1], height, width))
        probs[i, :, :image_h, :image_w] = one[0]
    return probs


# --- dataset evaluation -------------------------------------------------------------------------


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...``: every sample exactly once over all ranks.

    Unlike ``DistributedSampler`` it does not pad the last shard with repeated samples, so the
    all-reduced confusion matrix equals the single-process one.
    """

    def __init__(self, length: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, length, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _sample_label(sample: dict) -> str:
    return str(sample.get("image_path") or sample.get("name") or "<sample>")


def checked_collate(samples: list[dict]) -> dict:
    """Checks each sample's mask against its image size, then collates.

    Raises ``LabelError`` naming the image when a mask and its image differ in size.
    """
    for sample in samples:
        image_hw = tuple(sample["image"].shape[-2:])
        for key in ("mask", "weak_label"):
            if key in sample and tuple(sample[key].shape[-2:]) != image_hw:
                raise LabelError(
                    f"{_sample_label(sample)}: {key} is {tuple(sample[key].shape[-2:])} (H, W) "
                    f"but the image is {image_hw}"
                )
    return collate_batch(samples)


def denormalize(images: torch.Tensor) -> np.ndarray:
    """Images (B, 3, H, W) normalised with ImageNet mean/std -> uint8 (B, H, W, 3)."""
    return np.stack([denormalize_image(image) for image in images])


def refine_with_crf(images: torch.Tensor, probs: torch.Tensor, crf: dict | bool) -> torch.Tensor:
    """Dense-CRF refinement of probs (B, K, H, W) given the normalised images (B, 3, H, W)."""
    options = crf if isinstance(crf, dict) else {}
    pixels = denormalize(images)
    refined = [
        torch.from_numpy(crf_refine(pixels[i], probs[i].cpu().numpy(), **options))
        for i in range(probs.shape[0])
    ]
    return torch.stack(refined).to(probs.device)


def iterate_predictions(
    model: nn.Module,
    dataset: Dataset,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    sliding: int | tuple[int, int] | dict | None = None,
    crf: dict | bool | None = None,
    batch_size: int = 1,
    device=None,
    progress: bool = True,
    sampler: Sampler | None = None,
    num_workers: int = 0,
    desc: str = "eval",
    resize: int | None = None,
) -> Iterator[tuple[dict, torch.Tensor]]:
    """Yields ``(batch, probs)`` with probs (B, K, H, W) for each collated batch of ``dataset``.

    Padding added by ``collate_batch`` is marked in ``batch["valid_mask"]``; its masks are 255.
    ``resize``: the model sees each image with its shorter side resized to this many pixels, and
    the probabilities come back at the image's own size (see :func:`predict_at_own_size`).
    """
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=checked_collate,
    )
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, unit="batch"):
            images = batch["image"].to(device)
            if resize:
                image_hws = [unpadded_size(valid) for valid in batch["valid_mask"]]
                probs = predict_at_own_size(
                    model,
                    images,
                    image_hws,
                    resize=resize,
                    scales=scales,
                    flip=flip,
                    sliding=sliding,
                )
            else:
                probs = predict_logits(model, images, scales=scales, flip=flip, sliding=sliding)
            if crf:
                probs = refine_with_crf(images, probs, crf)
            yield batch, probs
    finally:
        model.train(was_training)


def unpadded_size(valid_mask: torch.Tensor) -> tuple[int, int]:
    """(H, W) of the real image inside a padded (H', W') ``valid_mask`` (top-left aligned)."""
    return int(valid_mask.any(dim=1).sum()), int(valid_mask.any(dim=0).sum())


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def rank_shard(dataset: Dataset) -> tuple[ShardSampler | None, bool]:
    """This process's sampler over ``dataset`` (None = all of it, when torch.distributed is not
    initialised) and whether it is rank 0, the one that shows progress bars."""
    if not distributed.is_distributed():
        return None, True
    rank = distributed.rank()
    return ShardSampler(len(dataset), rank, distributed.world_size()), rank == 0


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    sliding: int | tuple[int, int] | dict | None = None,
    crf: dict | bool | None = None,
    batch_size: int = 1,
    device=None,
    progress: bool = True,
    num_workers: int = 0,
    on_batch: Callable[[dict, torch.Tensor], None] | None = None,
) -> dict:
    """mIoU of ``model`` on ``dataset`` (samples with ``image`` and dense ``mask``).

    Returns ``dict(miou, per_class_iou, pixel_acc, confusion, classes, num_images)``:
    ``per_class_iou`` is a (K,) float64 array with NaN for classes absent from both the masks and
    the predictions (excluded from ``miou``), ``confusion`` the (K, K) int64 array (rows = truth).
    ``crf``: None/False, True (DeepLab defaults) or a dict of :func:`agmm.eval.crf.crf_refine`
    options. Under torch.distributed each rank evaluates a disjoint shard and the matrices are
    summed, so every rank returns the full-dataset numbers. ``on_batch(batch, probs)`` is called
    for every batch (e.g. to save predictions). Images of different sizes in one batch are padded
    (see ``collate_batch``); use ``batch_size=1`` for exact results with context-dependent models.
    """
    num_classes = int(dataset.num_classes)
    sampler, is_main = rank_shard(dataset)
    device = torch.device(device) if device is not None else model_device(model)
    confusion = ConfusionMatrix(
        num_classes, ignore_index=getattr(dataset, "ignore_index", IGNORE_INDEX), device=device
    )
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
        num_workers=num_workers,
    ):
        if probs.shape[1] != num_classes:
            raise ValueError(
                f"the model predicts {probs.shape[1]} classes but the dataset has {num_classes}"
            )
        confusion.update(probs.max(dim=1).indices, batch["mask"].to(device))  # = argmax, faster
        num_images += probs.shape[0]
        if on_batch is not None:
            on_batch(batch, probs)
    confusion.all_reduce()
    return {
        "miou": confusion.miou(),
        "per_class_iou": confusion.per_class_iou(),
        "pixel_acc": confusion.pixel_accuracy(),
        "confusion": confusion.matrix.cpu().numpy(),
        "classes": list(getattr(dataset, "classes", [str(k) for k in range(num_classes)])),
        "num_images": distributed.sum_over_ranks(num_images),
    }
