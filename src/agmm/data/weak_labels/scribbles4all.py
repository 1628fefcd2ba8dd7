"""Scribbles4All (Boettcher et al., NeurIPS 2024 Datasets & Benchmarks): read and convert.

The four releases (s4Pascal, s4Cityscapes, s4KITTI360, s4ADE20K) are linked from
github.com/wbkit/Scribbles4All. Their layout after the repository's ``extract*.sh`` scripts::

    s4Cityscapes/scribbles/gtFine/train/<city>/<dense label file name>.png   (+ .h5)
    s4KITTI360/train/2013_05_28_drive_XXXX_sync/image_00/scribble/<frame>.png (+ .h5)
    s4ADE20K/scribbles/training/ADE_train_XXXXXXXX.png                        (+ .h5)
    s4Pascal.tar.gz                                   one archive; PNGs named by VOC image id

The PNGs come from the repository's ``s4ScribbleGenerator/create_scribble.py``: it reads the dense
label with ``cv2.imread(path, IMREAD_COLOR)``, fills an image of that size with
``background_px_value`` (0, 0, 0), draws every scribble (``cv2.polylines``) in the colour the
dense label has under it, and writes it with ``cv2.imwrite`` under the dense label's file name.
So a file is a 3-channel PNG in which **0 is unlabeled** and every other value is the dense
label's own value (all three channels equal for grey-level labels). Label value 0 is never
scribbled (``ignore_values: [0]`` in its configs). The ``.h5`` beside each PNG keeps the polylines.

What the files hold, per release (the dense labels each was drawn from; ``S4_RELEASES``):

- s4Cityscapes: Cityscapes labelIds (``*_gtFine_labelIds.png``; 0 = unlabeled) -> 19 trainIds.
- s4KITTI360: KITTI-360 semantic ids (Cityscapes labelIds plus 34..44) -> the 19 trainIds of
  KITTI-360's ``labels.py`` (garage -> building, gate -> fence, smallpole -> pole).
- Both also read by the label colours, in case the source was ``*_gtFine_color.png`` /
  ``semantic_rgb``.
- s4ADE20K: ADE20K annotation values (0 = other, class c stored as c + 1) -> 150 classes.
- s4Pascal: VOC class ids; grey-level files read as ids (1..20; 0 and 255 unlabeled), colour
  files in the VOC palette read by colour (black and the border colour unlabeled). With the
  published generator settings the background (id 0, black) is never scribbled.

The generator code is the documentation; the dense-label sources above are our reading of it
(the value ranges are checked, a value outside them is a ``LabelError`` naming the file).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from agmm.data.palette import voc_palette
from agmm.errors import DataError, LabelError
from agmm.runtime.constants import CITYSCAPES_LABELID_TO_TRAINID, IGNORE_INDEX

# KITTI-360 ids 34..44 (KITTI-360's helpers/labels.py, trainId column); 0..33 are Cityscapes'.
_KITTI360_EXTRA_TRAIN_IDS = {34: 2, 35: 4, 36: 255, 37: 5, 38: 255, 39: 255, 40: 255, 41: 255}
_KITTI360_EXTRA_TRAIN_IDS.update({42: 255, 43: 255, 44: 255})
KITTI360_ID_TO_TRAINID = {**CITYSCAPES_LABELID_TO_TRAINID, **_KITTI360_EXTRA_TRAIN_IDS}

# Colours of the labelIds (cityscapesScripts / KITTI-360 helpers/labels.py), for scribbles drawn
# from the *_color.png / semantic_rgb files instead of the id files.
_ID_COLOURS = {
    0: (0, 0, 0), 1: (0, 0, 0), 2: (0, 0, 0), 3: (0, 0, 0), 4: (0, 0, 0), 5: (111, 74, 0),
    6: (81, 0, 81), 7: (128, 64, 128), 8: (244, 35, 232), 9: (250, 170, 160),
    10: (230, 150, 140), 11: (70, 70, 70), 12: (102, 102, 156), 13: (190, 153, 153),
    14: (180, 165, 180), 15: (150, 100, 100), 16: (150, 120, 90), 17: (153, 153, 153),
    18: (153, 153, 153), 19: (250, 170, 30), 20: (220, 220, 0), 21: (107, 142, 35),
    22: (152, 251, 152), 23: (70, 130, 180), 24: (220, 20, 60), 25: (255, 0, 0),
    26: (0, 0, 142), 27: (0, 0, 70), 28: (0, 60, 100), 29: (0, 0, 90), 30: (0, 0, 110),
    31: (0, 80, 100), 32: (0, 0, 230), 33: (119, 11, 32), 34: (64, 128, 128),
    35: (190, 153, 153), 36: (150, 120, 90), 37: (153, 153, 153), 38: (0, 64, 64),
    39: (0, 128, 192), 40: (128, 64, 0), 41: (64, 64, 128), 42: (102, 0, 0), 43: (51, 0, 51),
    44: (32, 32, 32),
}  # fmt: skip


def _lookup(id_map: dict[int, int]) -> np.ndarray:
    """Raw value (0..255) -> class id, 255 = unlabeled, -1 = not a value of the release."""
    table = np.full(256, -1, dtype=np.int64)
    for raw, class_id in id_map.items():
        table[raw] = class_id
    table[0] = IGNORE_INDEX  # the generator's background fill
    return table


def _colour_table(id_map: dict[int, int]) -> dict[tuple[int, int, int], int]:
    """RGB -> class id of the ids in ``id_map``; black = the generator's fill (unlabeled).

    Ids sharing a colour (pole / polegroup / smallpole, car / license plate, fence / gate) take
    the trainable class among them.
    """
    table: dict[tuple[int, int, int], int] = {}
    for raw, class_id in sorted(id_map.items()):
        colour = _ID_COLOURS[raw]
        if table.get(colour, IGNORE_INDEX) == IGNORE_INDEX:
            table[colour] = class_id
    table[(0, 0, 0)] = IGNORE_INDEX
    return table


def _stem_before(marker: str) -> Callable[[Path], str]:
    return lambda path: path.stem.split(marker)[0]


def _kitti360_name(path: Path) -> str:
    drive = next(
        (p for p in path.parts if re.fullmatch(r"\d{4}_\d{2}_\d{2}_drive_\d{4}_sync", p)), None
    )
    if drive is None:
        raise DataError(
            f"{path}: no 2013_05_28_drive_XXXX_sync folder above this KITTI-360 scribble"
        )
    return f"{drive}_{path.stem}"


@dataclass(frozen=True)
class S4Release:
    """How to find, name and decode the scribble PNGs of one release."""

    num_classes: int
    lookup: np.ndarray
    """(256,) raw grey value -> class id (255 = unlabeled, -1 = invalid)."""
    colours: dict[tuple[int, int, int], int] | None = None
    """RGB -> class id for scribbles drawn from colour-coded labels; None = ids only."""
    pattern: str = "**/*.png"
    name_of: Callable[[Path], str] = field(default=lambda path: path.stem)
    """Scribble file -> the sample name the library's dataset gives its image."""


_VOC_COLOURS = {tuple(int(c) for c in rgb): i for i, rgb in enumerate(voc_palette(21))}
_VOC_COLOURS.update({(0, 0, 0): IGNORE_INDEX, (224, 224, 192): IGNORE_INDEX})  # fill / VOC border

S4_RELEASES = {
    "s4pascal": S4Release(
        num_classes=21,
        lookup=_lookup({v: v for v in range(1, 21)} | {255: IGNORE_INDEX}),
        colours=_VOC_COLOURS,
    ),
    "s4cityscapes": S4Release(
        num_classes=19,
        lookup=_lookup(CITYSCAPES_LABELID_TO_TRAINID),
        colours=_colour_table(CITYSCAPES_LABELID_TO_TRAINID),
        name_of=_stem_before("_gtFine"),
    ),
    "s4kitti360": S4Release(
        num_classes=19,
        lookup=_lookup(KITTI360_ID_TO_TRAINID),
        colours=_colour_table(KITTI360_ID_TO_TRAINID),
        pattern="**/scribble/*.png",
        name_of=_kitti360_name,
    ),
    "s4ade20k": S4Release(num_classes=150, lookup=_lookup({v: v - 1 for v in range(1, 151)})),
}


def _release(name: str) -> S4Release:
    key = name.lower().replace("-", "").replace("_", "")
    if key not in S4_RELEASES:
        raise DataError(f"unknown Scribbles4All release {name!r}; valid: {sorted(S4_RELEASES)}")
    return S4_RELEASES[key]


def read_s4_scribble(path: str | Path, release: str) -> np.ndarray:
    """Read one Scribbles4All scribble PNG as ``(H, W)`` uint8 class ids, 255 = unlabeled.

    ``release``: s4pascal, s4cityscapes, s4kitti360 or s4ade20k. Grey, palette-index and
    3-channel files are accepted. A 3-channel file is read as ids when its channels are equal and
    every value is an id of the release, else by colour (the label colours of VOC / Cityscapes /
    KITTI-360; ADE20K has ids only). Raises ``DataError`` for a missing / unreadable file and
    ``LabelError`` for a value or colour the release cannot hold; both name the file.
    """
    spec, path = _release(release), Path(path)
    if not path.is_file():
        raise DataError(f"{path}: scribble file not found")
    try:
        with Image.open(path) as image:
            raw = np.array(image.convert("RGB") if image.mode in ("RGBA", "LA") else image)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot read scribble image ({error})") from error
    if raw.max(initial=0) > 255:
        raise LabelError(f"{path}: 16-bit values; Scribbles4All PNGs are 8-bit")
    if raw.ndim == 3:
        raw = raw[..., :3]
        grey = (raw == raw[..., :1]).all() and (spec.lookup[raw[..., 0]] >= 0).all()
        if not grey:
            return _by_colour(raw, spec, path, release)
        raw = raw[..., 0]
    labels = spec.lookup[raw.astype(np.int64)]
    if (labels < 0).any():
        values = np.unique(raw[labels < 0])[:8].tolist()
        raise LabelError(f"{path}: values {values} are not ids of {release} (0 = unlabeled)")
    return labels.astype(np.uint8)


def _by_colour(rgb: np.ndarray, spec: S4Release, path: Path, release: str) -> np.ndarray:
    if spec.colours is None:
        raise LabelError(
            f"{path}: is a colour image or has values that are not ids of {release}; its "
            "scribbles are grey-level label ids"
        )
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    labels = np.full(codes.shape, -1, dtype=np.int64)
    for (red, green, blue), class_id in spec.colours.items():
        labels[codes == (red << 16) | (green << 8) | blue] = class_id
    if (labels < 0).any():
        unknown = np.unique(codes[labels < 0])[:5].tolist()
        shown = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in unknown]
        raise LabelError(f"{path}: colours {shown} are neither ids nor label colours of {release}")
    return labels.astype(np.uint8)


def find_s4_scribbles(root: str | Path, release: str) -> dict[str, Path]:
    """{sample name: scribble PNG} of an extracted release folder; ``DataError`` if none or twice."""
    spec, root = _release(release), Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: Scribbles4All folder does not exist")
    found: dict[str, Path] = {}
    for path in sorted(root.glob(spec.pattern)):
        name = spec.name_of(path)
        if name in found:
            raise DataError(f"{path}: sample name {name!r} also used by {found[name]}")
        found[name] = path
    if not found:
        raise DataError(
            f"{root}: no {release} scribble PNGs ({spec.pattern}); extract the archives first"
        )
    return found


def convert_scribbles4all(root: str | Path, release: str, out_dir: str | Path) -> dict:
    """Write every scribble of a release as ``out_dir/<sample name>.png`` (255 = unlabeled).

    The output is the library's weak-label format: ``build_dataset(..., supervision="scribbles",
    weak_label_dir=out_dir)`` and ``data.weak_label_dir`` read it. Returns ``{"release", "images",
    "labeled_fraction", "pixels_per_class"}``.
    """
    spec = _release(release)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = np.zeros(spec.num_classes, dtype=np.int64)
    total = 0
    files = find_s4_scribbles(root, release)
    for name, path in files.items():
        labels = read_s4_scribble(path, release)
        Image.fromarray(labels).save(out_dir / f"{name}.png")
        counts += np.bincount(labels[labels != IGNORE_INDEX], minlength=spec.num_classes)
        total += labels.size
    return {
        "release": release,
        "images": len(files),
        "labeled_fraction": float(counts.sum() / max(total, 1)),
        "pixels_per_class": counts.tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m agmm.data.weak_labels.scribbles4all RELEASE ROOT OUT``."""
    parser = argparse.ArgumentParser(
        prog="python -m agmm.data.weak_labels.scribbles4all",
        description="Convert an extracted Scribbles4All release into agmm weak-label PNGs.",
    )
    parser.add_argument("release", choices=sorted(S4_RELEASES))
    parser.add_argument("root", help="the extracted release folder, e.g. s4Cityscapes")
    parser.add_argument("out", help="output folder for data.weak_label_dir")
    args = parser.parse_args(argv)
    try:
        summary = convert_scribbles4all(args.root, args.release, args.out)
    except (DataError, LabelError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"{summary['images']} {args.release} scribble maps -> {args.out} "
        f"({100 * summary['labeled_fraction']:.2f} % of pixels labeled)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
