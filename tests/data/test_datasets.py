"""Each dataset reads its benchmark's real layout and returns the sample dict of ARCHITECTURE.md."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from agmm.data import DATASETS, build_dataset
from agmm.errors import DataError

SAMPLE_KEYS = {"image", "weak_label", "mask", "tags", "boxes", "supervision", "name", "image_path"}


def assert_sample_contract(sample: dict, num_classes: int) -> None:
    assert set(sample) == SAMPLE_KEYS
    image, weak, mask = sample["image"], sample["weak_label"], sample["mask"]
    assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] == 3
    assert weak.dtype == torch.int64 and weak.shape == image.shape[1:]
    assert mask.dtype == torch.int64 and mask.shape == image.shape[1:]
    for label in (weak, mask):
        values = label.unique()
        assert ((values < num_classes) | (values == 255)).all()
    assert sample["tags"].dtype == torch.float32 and sample["tags"].shape == (num_classes,)
    assert sample["boxes"].dtype == torch.float32 and sample["boxes"].shape[1:] == (5,)
    assert isinstance(sample["name"], str) and isinstance(sample["image_path"], str)
    assert isinstance(sample["supervision"], str)


def assert_dataset_attributes(dataset) -> None:
    assert len(dataset.classes) == dataset.num_classes
    assert dataset.palette.shape == (dataset.num_classes, 3) and dataset.palette.dtype == np.uint8
    assert dataset.ignore_index == 255
    assert isinstance(dataset.has_background, bool)


def grey(path) -> np.ndarray:
    return np.array(Image.open(path))


def test_registry_has_every_dataset_and_a_miss_lists_the_names():
    assert set(DATASETS) >= {"camvid", "voc", "coco", "cityscapes", "ade20k", "folder", "synthetic"}
    with pytest.raises(DataError, match="valid names: .*camvid"):
        build_dataset("kitti", root=".", split="train")


def test_camvid_images_labels_layout(camvid_tree):
    train = build_dataset("camvid", root=camvid_tree, split="train")
    val = build_dataset("camvid", root=camvid_tree, split="val")
    assert len(train) == 3 and len(val) == 2
    assert_dataset_attributes(train)
    assert train.num_classes == 11 and not train.has_background
    sample = train[0]
    assert_sample_contract(sample, 11)
    expected = grey(camvid_tree / "labels" / "train" / f"{sample['name']}.png")
    assert np.array_equal(sample["mask"].numpy(), expected)
    assert sample["supervision"] == "full" and torch.equal(sample["weak_label"], sample["mask"])


def test_camvid_segnet_layout_reads_list_and_maps_void_11_to_ignore(camvid_segnet_tree):
    dataset = build_dataset("camvid", root=camvid_segnet_tree, split="train")
    assert dataset.names == ["0006R0_f00930", "0006R0_f01930", "0006R0_f02930"]
    sample = dataset[1]
    raw = grey(camvid_segnet_tree / "trainannot" / "0006R0_f01930.png")
    assert np.array_equal(sample["mask"].numpy(), np.where(raw == 11, 255, raw))


def test_camvid_real_folder(camvid):
    dataset = build_dataset("camvid", root=camvid, split="val")
    assert len(dataset) == 101
    sample = dataset[0]
    assert_sample_contract(sample, 11)
    assert sample["image"].shape == (3, 360, 480)
    assert (sample["mask"] != 255).float().mean() > 0.5


def test_camvid_real_simulated_points_are_deterministic_and_inside_their_class(camvid):
    make = lambda seed: build_dataset(  # noqa: E731
        "camvid", root=camvid, split="val", supervision="points", seed=seed
    )
    first, again, other = make(0)[3], make(0)[3], make(1)[3]
    assert torch.equal(first["weak_label"], again["weak_label"])
    assert not torch.equal(first["weak_label"], other["weak_label"])
    labeled = first["weak_label"] != 255
    assert labeled.any()
    assert torch.equal(first["weak_label"][labeled], first["mask"][labeled])


def test_voc_palette_pngs_are_read_as_class_ids(voc_tree):
    dataset = build_dataset("voc", root=voc_tree, split="train")
    assert_dataset_attributes(dataset)
    assert dataset.num_classes == 21 and dataset.has_background and dataset.classes[15] == "person"
    assert dataset.names == ["2007_000032", "2007_000039"]
    sample = dataset[0]
    assert_sample_contract(sample, 21)
    png = voc_tree / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000032.png"
    assert Image.open(png).mode == "P"
    assert np.array_equal(sample["mask"].numpy(), grey(png))
    assert (sample["mask"][0] == 255).all()  # the object border stays ignore
    assert set(sample["mask"].unique().tolist()) <= {0, 1, 15, 255}


def test_voc_root_may_be_the_voc2012_folder_itself(voc_tree):
    dataset = build_dataset("voc", root=voc_tree / "VOCdevkit" / "VOC2012", split="val")
    assert dataset.names == ["2008_000002"]


def test_voc_train_aug_reads_the_deeplab_list_and_sbd_masks(voc_tree):
    dataset = build_dataset("voc", root=voc_tree, split="train_aug")
    assert len(dataset) == 4
    assert all(r.mask_path.parent.name == "SegmentationClassAug" for r in dataset.records)
    assert_sample_contract(dataset[3], 21)


def test_voc_boxes_supervision_uses_the_xml_boxes(voc_tree):
    dataset = build_dataset("voc", root=voc_tree, split="train", supervision="boxes")
    sample = dataset[0]
    assert sample["supervision"] == "boxes"
    expected = torch.tensor([[0, 0, 8, 8, 1], [4, 2, 16, 12, 15]], dtype=torch.float32)
    assert torch.equal(sample["boxes"], expected)
    assert (sample["weak_label"] == 255).all()
    assert sample["tags"].nonzero().flatten().tolist() == [0, 1, 15]


def test_coco_masks_from_polygons_and_rle_with_contiguous_ids(coco_tree):
    dataset = build_dataset("coco", root=coco_tree, split="val")
    assert_dataset_attributes(dataset)
    assert dataset.classes == ["background", "person", "car"] and dataset.has_background
    assert dataset.names == ["000000000009", "000000000025"]
    sample = dataset[0]
    assert_sample_contract(sample, 3)
    mask = sample["mask"]
    assert mask[4, 4] == 1  # inside the person polygon
    assert mask[3, 12] == 2  # car: category id 3 -> class 2
    assert mask[10, 1] == 255  # RLE crowd region is ignored
    assert mask[11, 10] == 0  # background
    assert (dataset[1]["mask"] == 0).all()  # an image without annotations is all background


def test_coco_boxes_come_from_the_json_without_crowd(coco_tree):
    sample = build_dataset("coco", root=coco_tree, split="val", supervision="boxes")[0]
    expected = torch.tensor([[2, 2, 8, 8, 1], [10, 1, 15, 5, 2]], dtype=torch.float32)
    assert torch.equal(sample["boxes"], expected)


def test_cityscapes_train_ids(cityscapes_tree):
    dataset = build_dataset("cityscapes", root=cityscapes_tree, split="val")
    assert_dataset_attributes(dataset)
    assert dataset.num_classes == 19 and dataset.resolved_label_type == "trainIds"
    assert dataset.names == ["frankfurt_000000_000294", "lindau_000001_000019"]
    sample = dataset[0]
    assert_sample_contract(sample, 19)
    expected = grey(
        cityscapes_tree / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png"
    )
    assert np.array_equal(sample["mask"].numpy(), expected)


def test_cityscapes_label_ids_are_mapped_to_train_ids(cityscapes_tree):
    with_train_ids = build_dataset("cityscapes", root=cityscapes_tree, split="val")[1]["mask"]
    for path in cityscapes_tree.glob("gtFine/val/*/*_labelTrainIds.png"):
        path.unlink()
    dataset = build_dataset("cityscapes", root=cityscapes_tree, split="val")
    assert dataset.resolved_label_type == "labelIds"
    assert torch.equal(dataset[1]["mask"], with_train_ids)


def test_cityscapes_boxes_are_simulated_from_instance_ids(cityscapes_tree):
    dataset = build_dataset("cityscapes", root=cityscapes_tree, split="val", supervision="boxes")
    sample = dataset[0]
    assert sample["boxes"].tolist() == [[4, 4, 12, 8, 13]]  # the car instance; stuff gets none


def test_ade20k_reduces_zero_label(ade_tree):
    dataset = build_dataset("ade20k", root=ade_tree, split="val")
    assert_dataset_attributes(dataset)
    assert dataset.num_classes == 150 and dataset.classes[0] == "wall"
    sample = dataset[0]
    assert_sample_contract(sample, 150)
    raw = grey(ade_tree / "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png")
    assert np.array_equal(sample["mask"].numpy(), np.where(raw == 0, 255, raw.astype(int) - 1))


def test_folder_dataset_with_classes_txt(folder_tree):
    dataset = build_dataset("folder", root=folder_tree, split="train")
    assert_dataset_attributes(dataset)
    assert dataset.classes == ["background", "cat", "dog"] and dataset.has_background
    assert len(dataset) == 3
    assert_sample_contract(dataset[2], 3)


def test_folder_dataset_with_a_split_list_and_class_argument(tmp_path, files):
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        files.save_rgb(tmp_path / "images" / f"{name}.jpg", files.random_image(rng))
        files.save_grey(tmp_path / "labels" / f"{name}.png", files.blocky_label(rng, [0, 1]))
    (tmp_path / "val.txt").write_text("c\na\n")
    dataset = build_dataset("folder", root=tmp_path, split="val", classes=["road", "car"])
    assert dataset.names == ["c", "a"] and not dataset.has_background


def test_folder_dataset_reads_colour_labels_through_palette_txt(tmp_path, files):
    rng = np.random.default_rng(0)
    (tmp_path / "classes.txt").write_text("sky\ngrass\n")
    (tmp_path / "palette.txt").write_text("0 0 255\n0 255 0\n")
    files.save_rgb(tmp_path / "images" / "train" / "x.png", files.random_image(rng))
    ids = files.blocky_label(rng, [0, 1])
    colours = np.array([[0, 0, 255], [0, 255, 0]], np.uint8)[ids]
    files.save_rgb(tmp_path / "labels" / "train" / "x.png", colours)
    sample = build_dataset("folder", root=tmp_path, split="train")[0]
    assert np.array_equal(sample["mask"].numpy(), ids)


def test_synthetic_is_registered_and_ignores_root():
    dataset = build_dataset("synthetic", root=None, split="val", num_images=3, num_classes=4)
    assert_dataset_attributes(dataset)
    assert len(dataset) == 3 and dataset.has_background
    assert_sample_contract(dataset[0], 4)
