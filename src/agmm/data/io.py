"""Reading images and label maps from disk, with errors that name the file.

Everything here works on whole arrays (no loops over pixels) and converts the on-disk
conventions at the boundary: inside the library a label map is ``(H, W) uint8`` with class ids
``0..K-1`` and ``255`` = unlabeled / ignore.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from agmm.errors import DataError, LabelError
from agmm.runtime.constants import IGNORE_INDEX

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB. Returns (H, W, 3) uint8.

    Raises DataError naming the file when it is missing, unreadable or corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot read image ({error})") from error


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file read from its header only (no decoding)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError as error:
        raise DataError(f"{path}: file does not exist") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot read image ({error})") from error
    return height, width


def read_label_array(path: str | Path, *, palette: np.ndarray | None = None) -> np.ndarray:
    """Read the raw values of a label file. Returns (H, W) int32, no mapping applied.

    Palette ("P") PNGs give their palette indices (VOC ``SegmentationClass``), grey PNGs their
    values, 16-bit PNGs their values (Cityscapes ``instanceIds``). An RGB label image is
    mapped back to ids through ``palette`` (K, 3) when given (colours not in it are an error).
    """
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label file does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1"):
                return np.asarray(image).astype(np.int32)
            if image.mode in ("LA", "PA"):
                return np.asarray(image)[..., 0].astype(np.int32)
            rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise LabelError(f"{path}: cannot read label image ({error})") from error
    if palette is None:
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return rgb[..., 0].astype(np.int32)
        raise LabelError(
            f"{path}: label image is colour (RGB) but the dataset has no palette to map colours"
            " back to class ids; save labels as single-channel or palette PNGs"
        )
    ids = colours_to_ids(rgb, palette)
    unknown = ids < 0
    if unknown.any():
        colours = np.unique(rgb[unknown], axis=0)[:5].tolist()
        raise LabelError(
            f"{path}: colour label image has {int(unknown.sum())} pixel(s) with colours not in the"
            f" dataset palette, e.g. {colours}"
        )
    return ids


def colours_to_ids(rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map an (H, W, 3) colour label image to ids through palette (K, 3).

    Returns (H, W) int32; colours not in the palette give -1.
    """
    codes = rgb.astype(np.int64) @ np.array([65536, 256, 1])
    palette_codes = np.asarray(palette, dtype=np.int64) @ np.array([65536, 256, 1])
    order = np.argsort(palette_codes)
    position = np.searchsorted(palette_codes[order], codes).clip(0, len(order) - 1)
    found = palette_codes[order][position] == codes
    return np.where(found, order[position], -1).astype(np.int32)


def to_label_map(
    raw: np.ndarray,
    *,
    num_classes: int,
    path: str | Path,
    unlabeled_values: Iterable[int] = (IGNORE_INDEX,),
    id_map: Mapping[int, int] | np.ndarray | None = None,
    reduce_zero_label: bool = False,
) -> np.ndarray:
    """Convert raw label values to the library convention. Returns (H, W) uint8.

    Order: ``id_map`` (a lookup table or dict raw value -> class id or 255, e.g. Cityscapes
    labelIds -> trainIds) or ``reduce_zero_label`` (0 -> 255, v -> v - 1, ADE20K), then every
    value in ``unlabeled_values`` becomes 255. Any other value that is not ``< num_classes``
    raises LabelError naming the file, the values and the number of classes.
    """
    raw = np.asarray(raw).astype(np.int64)
    unlabeled = sorted({int(v) for v in unlabeled_values} | {IGNORE_INDEX})
    is_unlabeled = np.isin(raw, unlabeled)
    if id_map is not None:
        table = _lookup_table(id_map)
        valid = (raw >= 0) & (raw < len(table))
        rule = f"the id mapping knows raw ids 0..{len(table) - 1}"
        ids = table[np.where(valid, raw, 0)]
    elif reduce_zero_label:
        is_unlabeled |= raw == 0
        valid = (raw >= 1) & (raw <= num_classes)
        rule = f"0 = unlabeled and classes are stored as 1..{num_classes}"
        ids = raw - 1
    else:
        valid = (raw >= 0) & (raw < num_classes)
        rule = f"ids 0..{num_classes - 1}"
        ids = raw
    bad_mask = ~is_unlabeled & ~valid
    if bad_mask.any():
        bad = np.unique(raw[bad_mask])
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (" ..." if len(bad) > 8 else "")
        allowed = ", ".join(str(v) for v in unlabeled)
        raise LabelError(
            f"{path}: has label value(s) {shown} but the dataset has {num_classes} classes "
            f"({rule}; unlabeled/ignore values: {allowed}); {int(bad_mask.sum())} pixel(s) affected"
        )
    return np.where(is_unlabeled, IGNORE_INDEX, ids).astype(np.uint8)


def _lookup_table(id_map: Mapping[int, int] | np.ndarray) -> np.ndarray:
    if isinstance(id_map, np.ndarray):
        return id_map.astype(np.int64)
    table = np.full(max(id_map) + 1, IGNORE_INDEX, dtype=np.int64)
    for raw_id, class_id in id_map.items():
        table[raw_id] = class_id
    return table


def read_label_map(
    path: str | Path,
    *,
    num_classes: int,
    unlabeled_values: Iterable[int] = (IGNORE_INDEX,),
    id_map: Mapping[int, int] | np.ndarray | None = None,
    reduce_zero_label: bool = False,
    palette: np.ndarray | None = None,
    expected_hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read and validate a dense or weak label file. Returns (H, W) uint8, 255 = unlabeled.

    Raises LabelError naming the file when it is unreadable, has values outside the class
    list, or (with ``expected_hw``) its size differs from the image's.
    """
    raw = read_label_array(path, palette=palette)
    if expected_hw is not None and tuple(raw.shape[:2]) != tuple(expected_hw):
        raise LabelError(
            f"{path}: label size {raw.shape[1]}x{raw.shape[0]} (WxH) differs from its image's "
            f"{expected_hw[1]}x{expected_hw[0]}"
        )
    return to_label_map(
        raw,
        num_classes=num_classes,
        path=path,
        unlabeled_values=unlabeled_values,
        id_map=id_map,
        reduce_zero_label=reduce_zero_label,
    )


def find_image(
    folder: Path, stem: str, extensions: Iterable[str] = IMAGE_EXTENSIONS
) -> Path | None:
    """The file ``folder/stem.<ext>`` for the first extension that exists, else None."""
    for extension in extensions:
        candidate = folder / f"{stem}{extension}"
        if candidate.is_file():
            return candidate
    return None


def list_images(folder: Path, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    extensions = tuple(e.lower() for e in extensions)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)
