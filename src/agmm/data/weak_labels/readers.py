"""Readers for the weak-label files the community already ships, converted to library conventions.

Every reader returns class ids ``0..K-1`` with 255 = unlabeled, boxes as ``(M, 5)`` float32
``[x0, y0, x1, y1, class_id]`` in pixel-edge coordinates (x1, y1 exclusive), tags as ``(K,)``
float32 multi-hot. Missing or unreadable files raise ``DataError``; values that do not fit the
class list raise ``LabelError``; both name the file. ``docs/weak_labels.md`` lists the sources.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from agmm.data.weak_labels.simulate import tags_from_mask
from agmm.errors import DataError, LabelError
from agmm.runtime.constants import CITYSCAPES_LABELID_TO_TRAINID, IGNORE_INDEX

PathLike = str | os.PathLike

# ``read_label_png`` keyword arguments for the label PNGs each benchmark's weak labels come in.
LABEL_PNG_CONVENTIONS: dict[str, dict[str, Any]] = {
    # Point / scribble PNGs of the official AGMM code and TEL: 0 = background, 255 = unlabeled.
    "voc": {"num_classes": 21, "unlabeled_values": (255,)},
    # Some releases mark unlabeled pixels with the class count (21) instead of 255.
    "voc-21-unlabeled": {"num_classes": 21, "unlabeled_values": (255, 21)},
    # Cityscapes N-click files in raw labelIds (0 = unlabeled and every non-train id -> 255).
    "cityscapes-labelids": {
        "num_classes": 19,
        "unlabeled_values": (255,),
        "id_map": CITYSCAPES_LABELID_TO_TRAINID,
    },
    # Cityscapes labelTrainIds PNGs (19 classes, 255 = ignore).
    "cityscapes-trainids": {"num_classes": 19, "unlabeled_values": (255,)},
    # ADE20K block labels (TEL): 0 = unlabeled, class c stored as c + 1 (reduce_zero_label).
    "ade20k": {"num_classes": 150, "unlabeled_values": (255,), "reduce_zero_label": True},
    # CamVid (SegNet layout): 11 classes, 255 (or 11 = "Unlabelled" in the SegNet release) = void.
    "camvid": {"num_classes": 11, "unlabeled_values": (255, 11)},
}


# ----------------------------------------------------------------------------------- label PNGs


def read_label_png(
    path: PathLike,
    *,
    num_classes: int,
    unlabeled_values: Iterable[int] = (IGNORE_INDEX,),
    reduce_zero_label: bool = False,
    id_map: Mapping[int, int] | Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Read a label PNG of class indices into ``(H, W)`` uint8 with 255 = unlabeled.

    Palette ("P") PNGs are read as their indices, not their colours. Conversions, in order: raw
    values in ``unlabeled_values`` become 255; ``id_map`` (a dict, or a lookup table with -1 =
    invalid) maps raw ids to class ids, 255 meaning unlabeled (``CITYSCAPES_LABELID_TO_TRAINID``);
    ``reduce_zero_label`` makes 0 unlabeled and shifts every other id down by one (ADE20K). Raises ``LabelError`` naming the file when a value is neither a
    class id below ``num_classes`` nor an unlabeled value, ``DataError`` on a missing/corrupt file.
    See ``LABEL_PNG_CONVENTIONS`` for each benchmark's settings.
    """
    raw = _read_index_image(path)
    unlabeled = np.isin(raw, list(unlabeled_values))
    labels = raw.copy()
    if id_map is not None:
        if not isinstance(id_map, Mapping):  # a lookup table: raw id -> class id (< 0: invalid)
            id_map = {raw_id: int(value) for raw_id, value in enumerate(id_map) if value >= 0}
        id_map = {int(k): int(v) for k, v in id_map.items() if int(k) >= 0}
        lookup = np.full(max(int(raw.max()), max(id_map)) + 1, -1, np.int64)
        lookup[list(id_map)] = list(id_map.values())
        labels = lookup[np.maximum(raw, 0)]
        labels[raw < 0] = -1
        unmapped = (labels < 0) & ~unlabeled
        if unmapped.any():
            values = np.unique(raw[unmapped])[:8].tolist()
            raise LabelError(
                f"{path}: values {values} are not in the id map "
                f"(known raw ids {min(id_map)}..{max(id_map)}; "
                f"unlabeled = {list(unlabeled_values)})"
            )
        unlabeled |= labels == IGNORE_INDEX
    if reduce_zero_label:
        unlabeled |= labels == 0
        labels = labels - 1
    bad = ~unlabeled & ((labels < 0) | (labels >= num_classes))
    if bad.any():
        values = np.unique(raw[bad])[:8].tolist()
        hint = ""
        if np.any(np.asarray(values) == num_classes + int(reduce_zero_label)):
            hint = (
                f"; if {num_classes} marks unlabeled pixels in these files, pass "
                f"unlabeled_values=(255, {num_classes})"
            )
        raise LabelError(
            f"{path}: has values {values} but the dataset has {num_classes} classes "
            f"(unlabeled = {list(unlabeled_values)}"
            f"{', and 0 with reduce_zero_label' if reduce_zero_label else ''})"
            f"{hint}"
        )
    labels[unlabeled] = IGNORE_INDEX
    return labels.astype(np.uint8)


def _read_index_image(path: PathLike) -> np.ndarray:
    """``(H, W)`` int64 raw values of an index PNG (L, P, I or I;16 mode)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: label file not found")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("RGB", "RGBA"):
                raise LabelError(
                    f"{path}: is a colour ({mode}) image; expected class indices "
                    "(an 'L' or palette 'P' PNG)"
                )
            if mode in ("LA", "PA"):
                image = image.getchannel(0)
            array = np.array(image)
    except LabelError:
        raise
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: cannot read label image ({error})") from error
    if array.ndim != 2:
        raise LabelError(f"{path}: expected a single-channel label image, got shape {array.shape}")
    return array.astype(np.int64)


# ------------------------------------------------------------------------------------------ clicks


def read_whats_the_point_json(
    path: PathLike,
    *,
    image_sizes: Mapping[str, tuple[int, int]],
    radius: int = 0,
    num_classes: int = 21,
    allow_missing: bool = False,
    skip_out_of_bounds: bool = False,
) -> dict[str, np.ndarray]:
    """Rasterise the "What's the point" (Bearman et al., ECCV 2016) PASCAL VOC click file.

    The file (``pascal2012_trainval_main.json`` / ``_supp.json``) is one JSON dict: image id
    (``"2008_000008"``) -> list of clicks ``{"cls": 1..20, "x": col, "y": row, "rank": n}``,
    zero-indexed pixel coordinates, ``cls`` in alphabetical VOC order (= the usual VOC ids, 0 =
    background). ``image_sizes`` maps each wanted image id to its ``(H, W)``; the result maps it
    to an ``(H, W)`` uint8 label, each click drawn as a disk of ``radius`` pixels (0 = one pixel).
    Where disks of different classes overlap the pixel stays unlabeled, except clicked pixels.
    An image with no click in the file raises ``LabelError`` unless ``allow_missing`` (then all
    255); so does a click outside its image unless ``skip_out_of_bounds`` (then it is skipped with
    a warning that counts them).
    """
    data = _read_json(path)
    if not isinstance(data, dict):
        raise LabelError(f"{path}: expected a JSON object image id -> list of clicks")
    missing = [name for name in image_sizes if name not in data]
    if missing and not allow_missing:
        raise LabelError(
            f"{path}: no clicks for {len(missing)} image(s), e.g. {missing[:3]} "
            "(pass allow_missing=True to leave them unlabeled)"
        )
    labels, skipped = {}, 0
    for name, (height, width) in image_sizes.items():
        clicks = data.get(name, [])
        try:
            xs = np.array([round(float(c["x"])) for c in clicks], np.int64)
            ys = np.array([round(float(c["y"])) for c in clicks], np.int64)
            classes = np.array([int(c["cls"]) for c in clicks], np.int64)
        except (KeyError, TypeError, ValueError) as error:
            raise LabelError(
                f"{path}: image {name}: a click lacks x, y or cls ({error})"
            ) from error
        bad_class = (classes < 0) | (classes >= num_classes)
        if bad_class.any():
            raise LabelError(
                f"{path}: image {name} has click class {classes[bad_class][0]} "
                f"but the dataset has {num_classes} classes"
            )
        outside = (xs < 0) | (xs >= width) | (ys < 0) | (ys >= height)
        if outside.any():
            if not skip_out_of_bounds:
                raise LabelError(
                    f"{path}: image {name} ({height}x{width}) has a click at "
                    f"x={xs[outside][0]}, y={ys[outside][0]} outside the image "
                    "(pass skip_out_of_bounds=True to skip such clicks)"
                )
            skipped += int(outside.sum())
            xs, ys, classes = xs[~outside], ys[~outside], classes[~outside]
        labels[name] = _draw_classwise(
            (height, width),
            classes,
            [np.array([[x, y]]) for x, y in zip(xs, ys)],
            lambda canvas, points: cv2.circle(canvas, tuple(map(int, points[0])), radius, 1, -1),
        )
        labels[name][ys, xs] = classes  # clicked pixels keep their class
    if skipped:
        warnings.warn(f"{path}: skipped {skipped} click(s) outside their image", stacklevel=2)
    return labels


def _draw_classwise(size, classes, shapes, draw) -> np.ndarray:
    """``(H, W)`` uint8 label: each shape drawn with its class by ``draw(canvas, shape)``; pixels
    drawn by two different classes are left unlabeled (255)."""
    label = np.full(size, IGNORE_INDEX, np.uint8)
    conflict = np.zeros(size, bool)
    classes = np.asarray(classes, np.int64)
    for class_id in np.unique(classes):
        canvas = np.zeros(size, np.uint8)
        for index in np.flatnonzero(classes == class_id):
            draw(canvas, shapes[index])
        drawn = canvas.astype(bool)
        conflict |= drawn & (label != IGNORE_INDEX)
        label[drawn & (label == IGNORE_INDEX)] = class_id
    label[conflict] = IGNORE_INDEX
    return label


# --------------------------------------------------------------------------------------- scribbles


def read_scribblesup_xml(
    path: PathLike,
    *,
    class_names: Sequence[str],
    size: tuple[int, int] | None = None,
    width: int = 1,
    clip: bool = False,
) -> np.ndarray:
    """Rasterise a ScribbleSup (Lin et al., CVPR 2016) scribble XML into ``(H, W)`` uint8.

    Format (``pascal_2012/*.xml``): ``<annotation><size><width/><height/></size>`` then one
    ``<polygon><tag>class name</tag><point><X>x</X><Y>y</Y></point>...</polygon>`` per scribble;
    each is drawn with ``cv2.polylines`` (open, ``width`` pixels thick). Tags are matched to
    ``class_names`` ignoring case, spaces and underscores (VOC: ``VOC_CLASSES``, whose
    "background" the scribbles use). ``size = (H, W)`` defaults to the file's; a different one is
    an error. Pixels two classes draw on stay unlabeled. A point outside the image raises
    ``LabelError`` unless ``clip`` (then the stroke is clipped at the border).
    """
    root = _read_xml(path)
    file_size = _xml_size(root, path)
    if size is None:
        if file_size is None:
            raise LabelError(f"{path}: has no <size>; pass size=(H, W)")
        size = file_size
    elif file_size is not None and tuple(size) != file_size:
        raise LabelError(f"{path}: <size> is {file_size} (H, W) but the image is {tuple(size)}")
    height, width_px = size
    lookup = _name_lookup(class_names)
    classes, strokes = [], []
    for polygon in root.iter("polygon"):
        tag = (polygon.findtext("tag") or "").strip()
        class_id = lookup.get(_normalise(tag))
        if class_id is None:
            raise LabelError(f"{path}: scribble class {tag!r} is not in the class list")
        try:
            points = np.array(
                [[float(p.findtext("X")), float(p.findtext("Y"))] for p in polygon.iter("point")]
            )
        except (TypeError, ValueError) as error:
            raise LabelError(
                f"{path}: a <point> of a {tag!r} scribble is not X/Y numbers"
            ) from error
        if points.size == 0:
            continue
        points = np.rint(points).astype(np.int32)
        outside = (points[:, 0] < 0) | (points[:, 0] >= width_px)
        outside |= (points[:, 1] < 0) | (points[:, 1] >= height)
        if outside.any() and not clip:
            x, y = points[outside][0]
            raise LabelError(
                f"{path}: {tag!r} scribble point x={x}, y={y} is outside the "
                f"{height}x{width_px} image (pass clip=True to clip)"
            )
        classes.append(class_id)
        strokes.append(points)
    return _draw_classwise(
        (height, width_px),
        classes,
        strokes,
        lambda canvas, points: (
            cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, 1, width)
            if len(points) > 1
            else cv2.circle(canvas, tuple(map(int, points[0])), max(width // 2, 0), 1, -1)
        ),
    )


# ------------------------------------------------------------------------------------------- boxes


def read_voc_boxes(
    xml_path: PathLike,
    class_names: Sequence[str],
    *,
    skip_difficult: bool = False,
) -> np.ndarray:
    """Boxes ``(M, 5)`` float32 from a PASCAL VOC ``Annotations/<id>.xml``.

    VOC stores 1-based inclusive pixel indices ``xmin..xmax``; they become pixel edges
    ``[xmin - 1, ymin - 1, xmax, ymax]``. Class ids are positions in ``class_names`` (with
    background first on VOC, "person" is 15). Raises ``LabelError`` naming the file for a class not
    in the list, a box outside the image's ``<size>`` or of zero area.
    """
    root = _read_xml(xml_path)
    size = _xml_size(root, xml_path)
    lookup = _name_lookup(class_names)
    boxes = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if skip_difficult and (obj.findtext("difficult") or "0").strip() == "1":
            continue
        class_id = lookup.get(_normalise(name))
        if class_id is None:
            raise LabelError(f"{xml_path}: box class {name!r} is not in the class list")
        bndbox = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (
                float(bndbox.findtext(key)) for key in ("xmin", "ymin", "xmax", "ymax")
            )
        except (AttributeError, TypeError, ValueError) as error:
            raise LabelError(f"{xml_path}: {name!r} box has no numeric <bndbox>") from error
        boxes.append([xmin - 1, ymin - 1, xmax, ymax, class_id])
    return _checked_boxes(np.array(boxes, np.float64).reshape(-1, 5), size, xml_path)


def read_coco_boxes(
    coco: Any,
    image_id: int,
    category_map: Mapping[int, int],
    *,
    include_crowd: bool = False,
) -> np.ndarray:
    """Boxes ``(M, 5)`` float32 of one image from COCO instances JSON (path, loaded dict, or a
    ``pycocotools.coco.COCO``).

    COCO ``bbox = [x, y, w, h]`` (pixel edges) becomes ``[x, y, x + w, y + h]``; the class is
    ``category_map[category_id]`` (see ``coco_category_map``). ``iscrowd`` regions are left out
    unless ``include_crowd``. Boxes reaching past the border by less than one pixel (rounding in
    COCO files) are clipped; further out, zero area, or an unknown category raise ``LabelError``.
    """
    images, annotations_of, source = _coco_index(coco)
    if image_id not in images:
        raise LabelError(f"{source}: no image with id {image_id}")
    image = images[image_id]
    height, width = int(image["height"]), int(image["width"])
    boxes = []
    for annotation in annotations_of.get(image_id, []):
        if annotation.get("iscrowd", 0) and not include_crowd:
            continue
        category = annotation["category_id"]
        if category not in category_map:
            raise LabelError(
                f"{source}: image {image_id} has category id {category}, not in the category map"
            )
        x, y, w, h = (float(v) for v in annotation["bbox"])
        box = [x, y, x + w, y + h]
        if -1 < box[0] < 0 or width < box[2] < width + 1:
            box[0], box[2] = max(box[0], 0.0), min(box[2], float(width))
        if -1 < box[1] < 0 or height < box[3] < height + 1:
            box[1], box[3] = max(box[1], 0.0), min(box[3], float(height))
        boxes.append([*box, category_map[category]])
    name = f"{source} (image {image_id})"
    return _checked_boxes(np.array(boxes, np.float64).reshape(-1, 5), (height, width), name)


def coco_category_map(coco: Any, *, with_background: bool = True) -> dict[int, int]:
    """COCO category id -> contiguous class id, in category-id order; background takes 0 when
    ``with_background`` (so the 80 things are 1..80, as in COCO WSSS benchmarks)."""
    data = _coco_data(coco)[0]
    ids = sorted(int(c["id"]) for c in data.get("categories", []))
    offset = 1 if with_background else 0
    return {category: index + offset for index, category in enumerate(ids)}


def _checked_boxes(boxes: np.ndarray, size: tuple[int, int] | None, source: Any) -> np.ndarray:
    """Check boxes ``(M, 5)`` against an ``(H, W)`` image; LabelError naming ``source``."""
    if boxes.size:
        empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if empty.any():
            raise LabelError(f"{source}: box {boxes[empty][0, :4].tolist()} has zero area")
        outside = (boxes[:, 0] < 0) | (boxes[:, 1] < 0)
        if size is not None:
            outside |= (boxes[:, 2] > size[1]) | (boxes[:, 3] > size[0])
        if outside.any():
            raise LabelError(
                f"{source}: box {boxes[outside][0, :4].tolist()} (x0, y0, x1, y1) is outside the "
                f"image{'' if size is None else f' of {size[0]}x{size[1]} (H x W)'}"
            )
    return boxes.astype(np.float32)


def _coco_data(coco: Any) -> tuple[dict, str]:
    if hasattr(coco, "dataset"):  # pycocotools.coco.COCO
        return coco.dataset, "COCO annotations"
    if isinstance(coco, Mapping):
        return coco, "COCO annotations"
    return _read_json(coco), str(coco)


def _coco_index(coco: Any) -> tuple[dict, dict, str]:
    """(image id -> image record, image id -> annotations, name for errors)."""
    if hasattr(coco, "imgToAnns") and hasattr(coco, "imgs"):
        return coco.imgs, coco.imgToAnns, "COCO annotations"
    if isinstance(coco, Mapping):
        return (*_index_coco_dict(coco), "COCO annotations")
    path = Path(coco)
    if not path.is_file():
        raise DataError(f"{path}: COCO annotation file not found")
    images, annotations = _cached_coco_index(str(path.resolve()), path.stat().st_mtime_ns)
    return images, annotations, str(path)


@functools.lru_cache(maxsize=2)
def _cached_coco_index(path: str, _mtime_ns: int) -> tuple[dict, dict]:
    return _index_coco_dict(_read_json(path))


def _index_coco_dict(data: Mapping) -> tuple[dict, dict]:
    images = {image["id"]: image for image in data.get("images", [])}
    annotations: dict[int, list] = {}
    for annotation in data.get("annotations", []):
        annotations.setdefault(annotation["image_id"], []).append(annotation)
    return images, annotations


# -------------------------------------------------------------------------------------------- tags


def read_tags_npy(
    path: PathLike,
    *,
    num_classes: int,
    class_offset: int = 0,
    background_index: int | None = None,
    int_key_format: str | None = "voc",
) -> dict[str, np.ndarray]:
    """Image tags from a ``cls_labels.npy``-style pickled dict: image name -> multi-hot ``(L,)``.

    IRN / SEAM / ToCo ship VOC tags this way with the 20 object classes (no background): read them
    with ``num_classes=21, class_offset=1, background_index=0`` (entry i -> class i + 1, background
    always tagged). Keys may be strings ("2007_000032") or ints: IRN stores ``2007000032``, which
    ``int_key_format="voc"`` turns back into "2007_000032" (other ints, or ``None``: ``str(key)``).
    Returns name -> ``(num_classes,)`` float32. Raises ``LabelError`` naming the file on vectors
    that do not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: tag file not found")
    try:
        loaded = np.load(path, allow_pickle=True)
        data = (
            loaded.item() if isinstance(loaded, np.ndarray) and loaded.dtype == object else loaded
        )
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: cannot read tag file ({error})") from error
    if not isinstance(data, Mapping):
        raise LabelError(f"{path}: expected a pickled dict image name -> multi-hot vector")
    tags = {}
    for key, vector in data.items():
        vector = np.asarray(vector, np.float64).ravel()
        if class_offset + vector.size > num_classes:
            raise LabelError(
                f"{path}: entry {key!r} has {vector.size} classes; with class_offset="
                f"{class_offset} that exceeds the dataset's {num_classes} classes"
            )
        if not np.isin(vector, (0, 1)).all():
            raise LabelError(f"{path}: entry {key!r} is not a 0/1 multi-hot vector")
        out = np.zeros(num_classes, np.float32)
        out[class_offset : class_offset + vector.size] = vector
        if background_index is not None:
            out[background_index] = 1.0
        tags[_tag_key(key, int_key_format)] = out
    return tags


def _tag_key(key: Any, int_key_format: str | None) -> str:
    if isinstance(key, (int, np.integer)):
        digits = str(int(key))
        if int_key_format == "voc" and len(digits) == 10:  # IRN: 2007000032 -> 2007_000032
            return f"{digits[:4]}_{digits[4:]}"
        return digits
    if isinstance(key, bytes):
        return key.decode()
    return str(key)


def read_tags_list(
    path: PathLike, *, num_classes: int, class_names: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Image tags from a text file of lines ``name cls1 cls2 ...`` (class ids, or class names when
    ``class_names`` is given); blank lines and ``#`` comments are skipped. Returns name ->
    ``(num_classes,)`` float32. Raises ``LabelError`` naming the file and line on a bad class."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: tag list not found")
    lookup = _name_lookup(class_names) if class_names is not None else {}
    tags = {}
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        name, vector = fields[0], np.zeros(num_classes, np.float32)
        for token in fields[1:]:
            class_id = int(token) if token.lstrip("-").isdigit() else lookup.get(_normalise(token))
            if class_id is None or not 0 <= class_id < num_classes:
                raise LabelError(
                    f"{path}:{line_number}: class {token!r} is not one of the {num_classes} classes"
                )
            vector[class_id] = 1.0
        tags[name] = vector
    return tags


def tags_from_label(
    label: np.ndarray, num_classes: int, *, ignore_index: int = IGNORE_INDEX, min_pixels: int = 1
) -> np.ndarray:
    """``(K,)`` float32 multi-hot of the classes present in ``label: (H, W)`` (dense or weak)."""
    label = np.asarray(label)
    return tags_from_mask(
        np.where(label == ignore_index, -1, label), num_classes, min_pixels=min_pixels
    )


# ---------------------------------------------------------------------- agmm make-labels sidecars


def read_boxes_json(path: PathLike) -> dict[str, np.ndarray]:
    """Boxes written by ``agmm make-labels`` (``boxes.json``): name -> ``(M, 5)`` float32."""
    data = _read_json(path)
    boxes = data.get("boxes", data) if isinstance(data, dict) else None
    if not isinstance(boxes, dict):
        raise LabelError(f"{path}: expected {{'boxes': {{name: [[x0, y0, x1, y1, class], ...]}}}}")
    return {
        name: _checked_boxes(np.array(rows, np.float64).reshape(-1, 5), None, f"{path} ({name})")
        for name, rows in boxes.items()
    }


def read_tags_json(path: PathLike, *, num_classes: int) -> dict[str, np.ndarray]:
    """Tags written by ``agmm make-labels`` (``tags.json``, name -> class ids): name -> ``(K,)``."""
    data = _read_json(path)
    tags = data.get("tags", data) if isinstance(data, dict) else None
    if not isinstance(tags, dict):
        raise LabelError(f"{path}: expected {{'tags': {{name: [class ids]}}}}")
    out = {}
    for name, ids in tags.items():
        ids = np.asarray(ids, np.int64)
        if ((ids < 0) | (ids >= num_classes)).any():
            raise LabelError(
                f"{path}: {name} has class ids {ids.tolist()} outside 0..{num_classes - 1}"
            )
        out[name] = np.zeros(num_classes, np.float32)
        out[name][ids] = 1.0
    return out


# ----------------------------------------------------------------------------------------- helpers


def _read_json(path: PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: cannot read JSON ({error})") from error


def _read_xml(path: PathLike) -> ET.Element:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as error:
        raise DataError(f"{path}: cannot parse XML ({error})") from error


def _xml_size(root: ET.Element, path: PathLike) -> tuple[int, int] | None:
    """``(H, W)`` from ``<size><height/><width/></size>``, or None when absent."""
    size = root.find("size")
    if size is None:
        return None
    try:
        return int(float(size.findtext("height"))), int(float(size.findtext("width")))
    except (TypeError, ValueError) as error:
        raise LabelError(f"{path}: <size> has no numeric width/height") from error


def _normalise(name: str) -> str:
    return name.lower().replace(" ", "").replace("_", "").replace("-", "")


def _name_lookup(class_names: Sequence[str]) -> dict[str, int]:
    return {_normalise(name): index for index, name in enumerate(class_names)}


def read_voc_xml(
    xml_path: PathLike, classes: Sequence[str], *, skip_difficult: bool = False
) -> np.ndarray:
    """Same as ``read_voc_boxes`` (the name ``agmm.data.datasets`` calls)."""
    return read_voc_boxes(xml_path, classes, skip_difficult=skip_difficult)
