"""Tiny datasets written in each benchmark's real on-disk layout (file and folder names, palette
PNGs, JSON, XML), a few pixels each, so that loaders are tested without downloads."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from agmm.data.palette import voc_palette

HW = (12, 16)  # image size (H, W) of every fixture


def blocky_label(rng: np.random.Generator, values: list[int], hw=HW) -> np.ndarray:
    """(H, W) uint8 label of 4x4 blocks drawn from ``values``."""
    small = rng.choice(values, size=(hw[0] // 4, hw[1] // 4)).astype(np.uint8)
    return np.kron(small, np.ones((4, 4), np.uint8))


def random_image(rng: np.random.Generator, hw=HW) -> np.ndarray:
    return rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)


def save_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def save_grey(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(label, np.uint8)).save(path)


def save_palette(path: Path, label: np.ndarray) -> None:
    """A VOC-style palette PNG: pixel values are indices into the VOC colour map."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(label, np.uint8))
    image.putpalette(voc_palette(256).reshape(-1).tolist())
    assert image.mode == "P"
    image.save(path)


@pytest.fixture
def camvid_tree(tmp_path) -> Path:
    """CamVid images/ + labels/ layout: 3 train and 2 val images, values 0..10 and 255."""
    rng = np.random.default_rng(0)
    root = tmp_path / "camvid"
    for split, count in (("train", 3), ("val", 2)):
        for i in range(count):
            name = f"0001TP_00{i}{split[0]}"
            save_rgb(root / "images" / split / f"{name}.png", random_image(rng))
            save_grey(root / "labels" / split / f"{name}.png", blocky_label(rng, [0, 3, 5, 8, 255]))
    return root


@pytest.fixture
def camvid_segnet_tree(tmp_path) -> Path:
    """The SegNet CamVid layout: train/, trainannot/ (11 = void), train.txt."""
    rng = np.random.default_rng(1)
    root = tmp_path / "CamVid"
    lines = []
    for i in range(3):
        name = f"0006R0_f0{i}930"
        save_rgb(root / "train" / f"{name}.png", random_image(rng))
        save_grey(root / "trainannot" / f"{name}.png", blocky_label(rng, [1, 2, 4, 11]))
        lines.append(f"/SegNet/CamVid/train/{name}.png /SegNet/CamVid/trainannot/{name}.png")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


def _voc_xml(name: str, boxes: list[tuple[str, int, int, int, int]], hw=HW) -> str:
    objects = "".join(
        f"<object><name>{cls}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin>"
        f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for cls, x0, y0, x1, y1 in boxes
    )
    return (
        f"<annotation><folder>VOC2012</folder><filename>{name}.jpg</filename><size>"
        f"<width>{hw[1]}</width><height>{hw[0]}</height><depth>3</depth></size>{objects}</annotation>"
    )


@pytest.fixture
def voc_tree(tmp_path) -> Path:
    """VOCdevkit/VOC2012 with palette SegmentationClass, SBD SegmentationClassAug + train_aug,
    Annotations XML. Returns the folder holding VOCdevkit."""
    rng = np.random.default_rng(2)
    base = tmp_path / "VOCdevkit" / "VOC2012"
    names = ["2007_000032", "2007_000039", "2008_000002", "2010_001234"]
    for name in names:
        save_rgb(base / "JPEGImages" / f"{name}.jpg", random_image(rng))
        label = blocky_label(rng, [0, 1, 15])
        label[0, :] = 255  # the VOC object border
        save_palette(base / "SegmentationClass" / f"{name}.png", label)
        save_grey(base / "SegmentationClassAug" / f"{name}.png", label)
        xml = _voc_xml(name, [("aeroplane", 1, 1, 8, 8), ("person", 5, 3, 16, 12)])
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{name}.xml").write_text(xml)
    sets = base / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(names[:2]) + "\n")
    (sets / "val.txt").write_text("\n".join(names[2:3]) + "\n")
    aug = base / "ImageSets" / "SegmentationAug"
    aug.mkdir(parents=True)
    (aug / "train_aug.txt").write_text(
        "".join(
            f"/JPEGImages/{n}.jpg /SegmentationClassAug/{n}.png\n" for n in names[:3] + [names[3]]
        )
    )
    return tmp_path


@pytest.fixture
def coco_tree(tmp_path) -> Path:
    """annotations/instances_val2017.json (categories with id gaps, a polygon, an RLE crowd
    region, an image without annotations) + val2017/*.jpg."""
    rng = np.random.default_rng(3)
    root = tmp_path / "coco"
    images = []
    for image_id, file_name in ((9, "000000000009.jpg"), (25, "000000000025.jpg")):
        save_rgb(root / "val2017" / file_name, random_image(rng))
        images.append({"id": image_id, "file_name": file_name, "height": HW[0], "width": HW[1]})
    crowd = np.zeros(HW, np.uint8)
    crowd[8:12, 0:4] = 1
    runs = _rle_counts(crowd)
    annotations = [
        {  # a square polygon, category 1 (person -> class 1)
            "id": 1,
            "image_id": 9,
            "category_id": 1,
            "segmentation": [[2.0, 2.0, 8.0, 2.0, 8.0, 8.0, 2.0, 8.0]],
            "area": 36.0,
            "bbox": [2.0, 2.0, 6.0, 6.0],
            "iscrowd": 0,
        },
        {  # category 3 (car -> class 2, ids have a gap)
            "id": 2,
            "image_id": 9,
            "category_id": 3,
            "segmentation": [[10.0, 1.0, 15.0, 1.0, 15.0, 5.0, 10.0, 5.0]],
            "area": 20.0,
            "bbox": [10.0, 1.0, 5.0, 4.0],
            "iscrowd": 0,
        },
        {  # uncompressed RLE crowd region: ignored
            "id": 3,
            "image_id": 9,
            "category_id": 1,
            "segmentation": {"counts": runs, "size": list(HW)},
            "area": 16.0,
            "bbox": [0.0, 8.0, 4.0, 4.0],
            "iscrowd": 1,
        },
    ]
    categories = [
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 3, "name": "car", "supercategory": "vehicle"},
    ]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return root


def _rle_counts(binary: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE of a (H, W) binary mask (column-major runs, starting with zeros)."""
    flat = binary.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return counts if flat[0] == 0 else [0, *counts]


@pytest.fixture
def cityscapes_tree(tmp_path) -> Path:
    """leftImg8bit/val/<city>/..._leftImg8bit.png + gtFine labelTrainIds, labelIds, instanceIds."""
    rng = np.random.default_rng(4)
    root = tmp_path / "cityscapes"
    for city, frame in (("frankfurt", "000000_000294"), ("lindau", "000001_000019")):
        name = f"{city}_{frame}"
        save_rgb(root / "leftImg8bit" / "val" / city / f"{name}_leftImg8bit.png", random_image(rng))
        label_ids = blocky_label(rng, [0, 7, 8, 33])  # unlabeled, road, sidewalk, bicycle
        label_ids[4:8, 4:12] = 26  # a car
        gt = root / "gtFine" / "val" / city
        save_grey(gt / f"{name}_gtFine_labelIds.png", label_ids)
        train_ids = np.select(
            [label_ids == 7, label_ids == 8, label_ids == 26, label_ids == 33], [0, 1, 13, 18], 255
        )
        save_grey(gt / f"{name}_gtFine_labelTrainIds.png", train_ids)
        instances = np.where(label_ids == 26, 26000, label_ids.astype(np.int32))
        path = gt / f"{name}_gtFine_instanceIds.png"
        Image.fromarray(instances.astype(np.uint16)).save(path)
    return root


@pytest.fixture
def ade_tree(tmp_path) -> Path:
    """ADEChallengeData2016/images/validation + annotations/validation (0 = other, ids + 1)."""
    rng = np.random.default_rng(5)
    root = tmp_path / "ADEChallengeData2016"
    for i in (1, 2):
        name = f"ADE_val_{i:08d}"
        save_rgb(root / "images" / "validation" / f"{name}.jpg", random_image(rng))
        save_grey(
            root / "annotations" / "validation" / f"{name}.png", blocky_label(rng, [0, 1, 3, 150])
        )
    return tmp_path


@pytest.fixture
def folder_tree(tmp_path) -> Path:
    """images/train + labels/train + classes.txt (background, cat, dog)."""
    rng = np.random.default_rng(6)
    root = tmp_path / "mydata"
    root.mkdir()
    (root / "classes.txt").write_text("background\ncat\ndog\n")
    for i in range(3):
        save_rgb(root / "images" / "train" / f"img{i}.png", random_image(rng))
        save_grey(root / "labels" / "train" / f"img{i}.png", blocky_label(rng, [0, 1, 2]))
    return root


@pytest.fixture
def files() -> SimpleNamespace:
    """The writers above, for tests that build or break a layout themselves."""
    return SimpleNamespace(
        save_rgb=save_rgb,
        save_grey=save_grey,
        save_palette=save_palette,
        blocky_label=blocky_label,
        random_image=random_image,
        hw=HW,
    )
