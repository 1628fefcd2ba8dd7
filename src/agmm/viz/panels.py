"""Per-image panels: image | weak label | G_old | G_new | prediction | ground truth (paper Fig. 7-8).

G is drawn as the arg-max over the image's present classes, coloured with the dataset palette,
with the winning G value (the GMM's confidence, in [0, 1]) as brightness: dark = far from every
centre. ``gmm_heatmaps`` draws one heat map per present class instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import Patch
from torch import nn

from agmm.data.transforms import denormalize_image
from agmm.viz.figures import new_figure, save_figure

COLUMNS = ("image", "weak_label", "gmm_old", "gmm_new", "prediction", "mask")
TITLES = {
    "image": "image",
    "weak_label": "weak label",
    "gmm_old": "G_old (GMM)",
    "gmm_new": "G_new (after OEM)",
    "prediction": "prediction P",
    "mask": "ground truth",
}
IGNORE_RGB = np.array([255, 255, 255], dtype=np.uint8)
DARK_CLASS_RGB = np.array([170, 170, 170], dtype=np.float32)


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)


def as_rgb(image) -> np.ndarray:
    """(H, W, 3) uint8 from an uint8 array or a normalised (3, H, W) tensor."""
    if torch.is_tensor(image) and image.dtype != torch.uint8:
        return denormalize_image(image)
    image = _numpy(image)
    if image.ndim == 3 and image.shape[0] == 3 and image.shape[-1] != 3:
        image = image.transpose(1, 2, 0)
    return image.astype(np.uint8)


def colorize(labels, palette: np.ndarray, ignore_rgb=IGNORE_RGB) -> np.ndarray:
    """Label map (H, W) of ids (255 = ignore) -> (H, W, 3) uint8 through ``palette`` (K, 3)."""
    labels = _numpy(labels).astype(np.int64)
    table = np.zeros((256, 3), dtype=np.uint8)
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:255]
    table[: len(palette)] = palette
    table[255] = ignore_rgb
    return table[labels.clip(0, 255)]


def weak_label_rgb(
    weak_label, image: np.ndarray, palette: np.ndarray, grow: int | None = None
) -> np.ndarray:
    """Weak labels over a dimmed image; labeled pixels grown by ``grow`` px so clicks show
    (default: 2 px, or 1/120 of the longer image side for large images)."""
    weak_label = _numpy(weak_label).astype(np.int64)
    if grow is None:
        grow = max(2, max(weak_label.shape) // 120)
    labeled = weak_label != 255
    ids = np.where(labeled, weak_label, 0).astype(np.uint8)
    if grow > 0 and labeled.any():
        kernel = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
        # grow each labeled pixel; where classes touch, the larger id wins (fine for a picture)
        ids = cv2.dilate(np.where(labeled, ids + 1, 0).astype(np.uint8), kernel)
        labeled, ids = ids > 0, np.maximum(ids.astype(np.int64) - 1, 0)
    out = (image.astype(np.float32) * 0.35 + 40).astype(np.uint8)
    out[labeled] = colorize(ids, palette)[labeled]
    return out


def gmm_rgb(
    gmm_probs,
    palette: np.ndarray,
    *,
    size: tuple[int, int] | None = None,
    present=None,
) -> np.ndarray:
    """G (K, h, w) in [0, 1] -> (H, W, 3) uint8: arg-max class colour × its G value.

    Black palette colours are drawn grey so that their confidence shows.
    Only ``present`` classes (K,) bool compete (default: classes with some G > 0); ``size`` (H, W)
    resizes G bilinearly first. An image without present classes is black.
    """
    gmm_probs = torch.as_tensor(_numpy(gmm_probs), dtype=torch.float32)
    if present is None:
        present = gmm_probs.flatten(1).amax(dim=1) > 0
    present = torch.as_tensor(_numpy(present), dtype=torch.bool)
    if size is not None and tuple(gmm_probs.shape[-2:]) != tuple(size):
        gmm_probs = F.interpolate(gmm_probs[None], size=size, mode="bilinear", align_corners=False)[
            0
        ]
    if not present.any():
        return np.zeros((*gmm_probs.shape[-2:], 3), dtype=np.uint8)
    scores = gmm_probs.masked_fill(~present[:, None, None], -1.0)
    confidence, labels = scores.max(dim=0)
    colours = colorize(labels.numpy(), palette).astype(np.float32)
    # a black class colour (VOC's background) would hide its confidence: draw it grey
    colours[colours.max(axis=-1) < 40] = DARK_CLASS_RGB
    return (colours * confidence.clamp(0, 1).numpy()[..., None]).round().astype(np.uint8)


def gmm_heatmaps(gmm_probs, classes: Sequence[str], path: str | Path, present=None) -> Path:
    """One heat map (viridis, 0..1) per present class of G (K, h, w), in a row; saved as PNG."""
    gmm_probs = _numpy(gmm_probs)
    if present is None:
        present = gmm_probs.reshape(len(gmm_probs), -1).max(axis=1) > 0
    indices = np.flatnonzero(_numpy(present)) if np.any(present) else np.arange(len(gmm_probs))
    fig = new_figure(2.6 * len(indices) + 0.6, 2.6)
    axes = fig.subplots(1, len(indices), squeeze=False)
    for ax, k in zip(axes[0], indices):
        shown = ax.imshow(gmm_probs[k], cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"G: {classes[k]}", fontsize=9)
        ax.axis("off")
    fig.colorbar(shown, ax=axes[0].tolist(), fraction=0.02)
    return save_figure(fig, path)


def _label_map(value) -> np.ndarray:
    """Labels (H, W) from ids (H, W) or scores (K, H, W)."""
    value = _numpy(value)
    return value.argmax(axis=0) if value.ndim == 3 else value


def panel_images(row: dict, palette: np.ndarray) -> dict[str, np.ndarray]:
    """The RGB pictures (H, W, 3) uint8 of one row's entries (see :func:`save_panels`)."""
    image = as_rgb(row["image"]) if row.get("image") is not None else None
    size = image.shape[:2] if image is not None else None
    pictures = {}
    for column in COLUMNS:
        value = row.get(column)
        if value is None:
            continue
        if column == "image":
            pictures[column] = image
        elif column == "weak_label":
            base = image if image is not None else np.zeros((*_numpy(value).shape, 3), np.uint8)
            pictures[column] = weak_label_rgb(value, base, palette)
        elif column in ("gmm_old", "gmm_new"):
            pictures[column] = gmm_rgb(value, palette, size=size, present=row.get("present"))
        else:
            pictures[column] = colorize(_label_map(value), palette)
    return pictures


def save_panels(
    path: str | Path,
    rows: Sequence[dict],
    *,
    palette: np.ndarray,
    classes: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    panel_size: float = 2.4,
) -> Path:
    """Draws one row per image and saves a PNG (matplotlib, Agg backend).

    Each row is a dict with any of: ``image`` ((H, W, 3) uint8 or normalised (3, H, W) tensor),
    ``weak_label`` (H, W) ids, ``gmm_old`` / ``gmm_new`` (K, h, w) G, ``present`` (K,) bool,
    ``prediction`` (H, W) ids or (K, H, W) scores, ``mask`` (H, W) ids (255 = ignore, white), and
    ``name`` (row label). ``columns`` defaults to those of ``COLUMNS`` present in some row. With
    ``classes`` a colour legend of the classes shown is added.
    """
    if not rows:
        raise ValueError("save_panels needs at least one row")
    columns = list(columns or [c for c in COLUMNS if any(r.get(c) is not None for r in rows)])
    fig = new_figure(panel_size * len(columns), panel_size * len(rows) + (0.5 if classes else 0))
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    shown_ids: set[int] = set()
    shows_void = False
    for r, row in enumerate(rows):
        pictures = panel_images(row, palette)
        for c, column in enumerate(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if column in pictures:
                ax.imshow(pictures[column], interpolation="nearest")
            if r == 0:
                ax.set_title(TITLES.get(column, column), fontsize=9)
            if c == 0 and row.get("name"):
                ax.set_ylabel(str(row["name"]), fontsize=8)
        for column in ("mask", "prediction", "weak_label"):
            if row.get(column) is not None:
                ids = np.unique(_label_map(row[column]))
                shown_ids.update(int(i) for i in ids if i != 255)
                shows_void = shows_void or bool((ids == 255).any())
    if classes:
        handles = [
            Patch(color=np.asarray(palette[k]) / 255.0, label=classes[k])
            for k in sorted(shown_ids)
            if k < len(classes)
        ]
        if shows_void:
            handles.append(
                Patch(facecolor=IGNORE_RGB / 255.0, edgecolor="0.5", label="void / unlabeled (255)")
            )
        if handles:
            fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8)
    fig.tight_layout(rect=(0, 0.06 if classes else 0, 1, 1))
    return save_figure(fig, path)


def spread_indices(count: int, length: int) -> list[int]:
    """``count`` indices spread evenly over ``range(length)`` (first and last included), so that
    pictures of a video dataset such as CamVid do not show near-identical consecutive frames."""
    if count <= 0 or length <= 0:
        return []
    if count >= length:
        return list(range(length))
    return sorted({round(i * (length - 1) / max(count - 1, 1)) for i in range(count)})


@torch.no_grad()
def panel_rows(
    model: nn.Module,
    dataset,
    indices: Sequence[int],
    *,
    loss_module: nn.Module | None = None,
    device=None,
) -> list[dict]:
    """Rows for :func:`save_panels` from a model (and its ``AGMMLoss`` for G) on dataset images.

    Each row holds image, weak_label, mask, prediction, name and, with ``loss_module``,
    gmm_old / gmm_new / present from ``loss_module.fit_gmm``.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    modules = [model] + ([loss_module] if loss_module is not None else [])
    modes = [m.training for m in modules]
    for module in modules:
        module.eval()
    rows = []
    try:
        for index in indices:
            sample = dataset[index]
            image = sample["image"][None].to(device)
            weak = sample["weak_label"][None].to(device)
            out = model(image)
            row = {
                "name": sample.get("name"),
                "image": sample["image"],
                "weak_label": sample["weak_label"],
                "prediction": out["logits"][0].argmax(0).cpu(),
                "mask": sample["mask"] if bool((sample["mask"] != 255).any()) else None,
            }
            if loss_module is not None:
                gmm = loss_module.fit_gmm(out["features"], weak)
                row.update(
                    gmm_old=gmm["gmm_old"][0].cpu(),
                    gmm_new=gmm["gmm_new"][0].cpu(),
                    present=gmm["present"][0].cpu(),
                )
            rows.append(row)
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)
    return rows
