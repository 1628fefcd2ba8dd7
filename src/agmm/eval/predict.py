"""Predict masks for image files: palette PNGs (and optionally probabilities) with a progress bar.

Only the segmenter runs; the GMM module is training-only and is never built here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from agmm.data.io import IMAGE_EXTENSIONS, image_size, read_image, read_label_array
from agmm.data.transforms import normalize_image, resize_label
from agmm.errors import DataError, LabelError
from agmm.eval.crf import crf_refine
from agmm.eval.inference import model_device, predict_logits, resized_scales
from agmm.eval.metrics import ConfusionMatrix

IGNORE_COLOUR = (255, 255, 255)


# --- label PNGs ---------------------------------------------------------------------------------


def palette_bytes(palette: np.ndarray) -> list[int]:
    """A 256-entry PIL palette: the K dataset colours, black for unused ids, white for 255."""
    table = np.zeros((256, 3), dtype=np.uint8)
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:255]
    table[: len(palette)] = palette
    table[255] = IGNORE_COLOUR
    return table.reshape(-1).tolist()


def save_label_png(label: np.ndarray, path: str | Path, palette: np.ndarray | None = None) -> Path:
    """Writes a label map (H, W) of ids 0..254 (255 = ignore) as a "P"-mode PNG.

    The pixel values are the class ids, so the file reads back exactly; the palette only colours
    them for viewers. Parent folders are created.
    """
    label = np.asarray(label)
    if label.min(initial=0) < 0 or label.max(initial=0) > 255:
        raise ValueError(f"{path}: label values must lie in 0..255")
    image = Image.fromarray(label.astype(np.uint8), mode="P")
    if palette is not None:
        image.putpalette(palette_bytes(palette))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def read_label_png(path: str | Path) -> np.ndarray:
    """Reads a label PNG written by :func:`save_label_png`. Returns (H, W) int64 ids."""
    return read_label_array(path).astype(np.int64)


# --- images on disk -----------------------------------------------------------------------------


def list_images(inputs: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """Image files named by ``inputs`` (files or folders, searched recursively), in sorted order.

    Returns ``(path, relative)`` pairs where ``relative`` (no suffix) is where the outputs go:
    the path below the folder it was found in, or the bare file name for a file argument.
    Raises DataError for a missing input or when nothing is found.
    """
    found: list[tuple[Path, Path]] = []
    for entry in map(Path, inputs):
        if entry.is_dir():
            files = sorted(
                p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            found += [(p, p.relative_to(entry).with_suffix("")) for p in files]
        elif entry.is_file():
            found.append((entry, Path(entry.stem)))
        else:
            raise DataError(f"{entry}: no such image file or folder")
    if not found:
        raise DataError(
            f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(map(str, inputs))}"
        )
    relatives = [relative for _, relative in found]
    if len(set(relatives)) != len(relatives):
        duplicate = next(r for r in relatives if relatives.count(r) > 1)
        clashing = [str(p) for p, r in found if r == duplicate]
        raise DataError(f"{' and '.join(clashing)} would write the same output {duplicate}.png")
    return found


class ImageFiles(Dataset):
    """Reads image files as ``dict(image=(3, H, W) normalised, pixels=(H, W, 3) uint8, index)``."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        pixels = read_image(self.paths[index])
        return {"image": normalize_image(pixels), "pixels": pixels, "index": index}


def same_size_batches(paths: Sequence[Path], batch_size: int) -> list[list[int]]:
    """Index batches of at most ``batch_size`` images of one size (sizes read from file headers)."""
    by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, path in enumerate(paths):
        by_size[image_size(path)].append(index)
    batches = []
    for indices in by_size.values():
        batches += [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    return sorted(batches)


def _collate_images(samples: list[dict]) -> dict:
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "pixels": [s["pixels"] for s in samples],
        "index": [s["index"] for s in samples],
    }


@torch.no_grad()
def predict_images(
    model: nn.Module,
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    *,
    palette: np.ndarray | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    sliding: int | tuple[int, int] | dict | None = None,
    crf: dict | bool | None = None,
    save_probs: bool = False,
    batch_size: int = 4,
    device=None,
    progress: bool = True,
    num_workers: int = 0,
    resize: int | None = None,
) -> list[Path]:
    """Predicts every image in ``inputs`` (files or folders) and writes ``out_dir/<name>.png``
    at the image's own size. ``resize``: the model sees each image with its shorter side resized
    to this many pixels (as ``EvalTransform(resize)`` gives it to ``evaluate``).

    PNGs are "P"-mode label maps coloured with ``palette`` (K, 3); with ``save_probs`` also
    ``out_dir/<name>.npy``: the (K, H, W) float16 probabilities. Images of the same size are
    batched together. ``scales``/``flip``/``sliding`` as in :func:`agmm.eval.inference.predict_logits`,
    ``crf`` as in :func:`agmm.eval.inference.evaluate`. Returns the written PNG paths.
    """
    images = list_images(inputs)
    paths = [path for path, _ in images]
    out_dir = Path(out_dir)
    device = torch.device(device) if device is not None else model_device(model)
    loader = DataLoader(
        ImageFiles(paths),
        batch_sampler=same_size_batches(paths, batch_size),
        num_workers=num_workers,
        collate_fn=_collate_images,
    )
    crf_options = crf if isinstance(crf, dict) else {}
    written = []
    was_training = model.training
    model.eval()
    try:
        with tqdm(total=len(paths), desc="predict", unit="img", disable=not progress) as bar:
            for batch in loader:
                pixels = batch["image"].to(device)  # one size per batch (same_size_batches)
                probs = predict_logits(
                    model,
                    pixels,
                    scales=resized_scales(scales, tuple(pixels.shape[-2:]), resize),
                    flip=flip,
                    sliding=sliding,
                ).cpu()
                for i, index in enumerate(batch["index"]):
                    image_probs = probs[i].numpy()
                    if crf:
                        image_probs = crf_refine(batch["pixels"][i], image_probs, **crf_options)
                    target = out_dir / images[index][1]
                    written.append(
                        save_label_png(image_probs.argmax(0), target.with_suffix(".png"), palette)
                    )
                    if save_probs:
                        np.save(target.with_suffix(".npy"), image_probs.astype(np.float16))
                bar.update(len(batch["index"]))
    finally:
        model.train(was_training)
    return written


def evaluate_saved_predictions(pred_dir: str | Path, dataset: Dataset, *, progress=True) -> dict:
    """mIoU of label PNGs ``pred_dir/<name>.png`` against the dataset's masks.

    A prediction at its image's own size (as ``agmm predict`` and ``agmm pseudo-labels`` write it)
    is resized with nearest neighbour to the mask's size when the dataset resizes its samples, the
    same rule the mask went through, so the score matches the model's under the same resize.
    Returns the same keys as :func:`agmm.eval.inference.evaluate`. A missing prediction is a
    DataError, one whose size fits neither the mask nor its image a LabelError, both naming the file.
    """
    pred_dir = Path(pred_dir)
    confusion = ConfusionMatrix(dataset.num_classes, getattr(dataset, "ignore_index", 255))
    for index in tqdm(range(len(dataset)), desc="eval", disable=not progress, unit="img"):
        sample = dataset[index]
        path = pred_dir / f"{sample['name']}.png"
        if not path.is_file():
            raise DataError(f"{path}: no prediction for image {sample['name']}")
        pred = read_label_png(path)
        mask_hw = tuple(sample["mask"].shape)
        if pred.shape != mask_hw and _shorter_side_resize(pred.shape, mask_hw):
            pred = resize_label(pred.astype(np.uint8), mask_hw)
        pred = torch.from_numpy(pred.astype(np.int64))
        if tuple(pred.shape) != mask_hw:
            raise LabelError(
                f"{path}: prediction is {tuple(pred.shape)} (H, W) but the mask of "
                f"{sample['name']} is {mask_hw}, nor is it that size resized (same aspect ratio)"
            )
        confusion.update(pred, sample["mask"])
    return {
        "miou": confusion.miou(),
        "per_class_iou": confusion.per_class_iou(),
        "pixel_acc": confusion.pixel_accuracy(),
        "confusion": confusion.matrix.numpy(),
        "classes": list(getattr(dataset, "classes", [])),
        "num_images": len(dataset),
    }


def _shorter_side_resize(own_hw: tuple[int, int], mask_hw: tuple[int, int]) -> bool:
    """Whether ``EvalTransform(resize=min(mask_hw))`` turns an image of ``own_hw`` into ``mask_hw``."""
    scale = min(mask_hw) / min(own_hw)
    return (max(1, round(own_hw[0] * scale)), max(1, round(own_hw[1] * scale))) == tuple(mask_hw)
