"""Bad input raises an error that names the file and the problem; nothing is dropped silently,
and skipping is an explicit option that reports what it skipped."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from agmm.data import build_dataset
from agmm.errors import DataError, LabelError


def test_split_list_naming_a_missing_image_raises_with_the_file(voc_tree):
    sets = voc_tree / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt"
    sets.write_text(sets.read_text() + "2011_999999\n")
    with pytest.raises(DataError, match=r"JPEGImages/2011_999999\.jpg.*missing"):
        build_dataset("voc", root=voc_tree, split="train")


def test_missing_split_list_names_the_expected_file(voc_tree):
    with pytest.raises(DataError, match=r"ImageSets/Segmentation/trainval\.txt"):
        build_dataset("voc", root=voc_tree, split="trainval")


def test_empty_split_raises(voc_tree):
    (voc_tree / "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt").write_text("\n")
    with pytest.raises(DataError, match="split 'train' has no images"):
        build_dataset("voc", root=voc_tree, split="train")


def test_missing_label_file_raises_with_its_path(camvid_tree):
    (camvid_tree / "labels/train/0001TP_001t.png").unlink()
    with pytest.raises(DataError, match=r"labels/train/0001TP_001t\.png: label .* missing"):
        build_dataset("camvid", root=camvid_tree, split="train")


def test_mask_size_mismatch_names_the_file(camvid_tree, files):
    path = camvid_tree / "labels/train/0001TP_002t.png"
    files.save_grey(path, np.zeros((5, 7), np.uint8))
    dataset = build_dataset("camvid", root=camvid_tree, split="train")
    with pytest.raises(LabelError, match=r"0001TP_002t\.png: label size 7x5 .* differs .* 16x12"):
        dataset[2]


def test_label_value_out_of_range_names_the_file_and_the_value(camvid_tree, files):
    path = camvid_tree / "labels/val/0001TP_000v.png"
    label = np.zeros(files.hw, np.uint8)
    label[3, 3] = 37
    files.save_grey(path, label)
    dataset = build_dataset("camvid", root=camvid_tree, split="val")
    with pytest.raises(
        LabelError, match=r"0001TP_000v\.png: has label value\(s\) 37 .* 11 classes"
    ):
        dataset[0]


def test_corrupt_image_names_the_file(camvid_tree):
    path = camvid_tree / "images/val/0001TP_001v.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    dataset = build_dataset("camvid", root=camvid_tree, split="val")
    with pytest.raises(DataError, match=r"0001TP_001v\.png: cannot read image"):
        dataset[1]


def test_corrupt_coco_json_names_the_file(coco_tree):
    (coco_tree / "annotations/instances_val2017.json").write_text("{not json")
    with pytest.raises(DataError, match=r"instances_val2017\.json: cannot read COCO json"):
        build_dataset("coco", root=coco_tree, split="val")


def test_weak_label_with_values_outside_the_classes_names_the_file(voc_tree, tmp_path, files):
    weak_dir = tmp_path / "points"
    label = np.full(files.hw, 255, np.uint8)
    label[2, 2] = 40
    files.save_grey(weak_dir / "2007_000032.png", label)
    files.save_grey(weak_dir / "2007_000039.png", np.full(files.hw, 21, np.uint8))
    dataset = build_dataset(
        "voc", root=voc_tree, split="train", supervision="points", weak_label_dir=weak_dir
    )
    with pytest.raises(LabelError, match=r"2007_000032\.png: has values \[40\]"):
        dataset[0]


def test_missing_weak_label_names_the_image(voc_tree, tmp_path, files):
    weak_dir = tmp_path / "scribbles"
    files.save_grey(weak_dir / "2007_000032.png", np.full(files.hw, 255, np.uint8))
    with pytest.raises(DataError, match=r"no scribbles weak label for image 2007_000039\.jpg"):
        build_dataset(
            "voc", root=voc_tree, split="train", supervision="scribbles", weak_label_dir=weak_dir
        )


def test_skip_bad_leaves_out_and_reports_every_bad_image(camvid_tree, files, caplog):
    (camvid_tree / "images/train/0001TP_000t.png").write_bytes(b"garbage")
    files.save_grey(camvid_tree / "labels/train/0001TP_001t.png", np.zeros((5, 7), np.uint8))
    with caplog.at_level(logging.WARNING):
        dataset = build_dataset("camvid", root=camvid_tree, split="train", skip_bad=True)
    assert dataset.names == ["0001TP_002t"]
    assert [s.name for s in dataset.skipped] == ["0001TP_000t", "0001TP_001t"]
    assert "cannot read image" in dataset.skipped[0].reason
    assert dataset.skipped[1].path.endswith("labels/train/0001TP_001t.png")
    assert "0001TP_000t" in caplog.text and "0001TP_001t" in caplog.text


def test_unknown_supervision_lists_the_valid_ones(camvid_tree):
    with pytest.raises(DataError, match="valid: points, scribbles"):
        build_dataset("camvid", root=camvid_tree, split="train", supervision="clicks")


def test_a_bad_image_read_by_a_dataloader_worker_is_one_line(camvid_tree):
    from torch.utils.data import DataLoader

    path = camvid_tree / "images/train/0001TP_001t.png"
    path.write_bytes(b"not an image")
    dataset = build_dataset("camvid", root=camvid_tree, split="train", supervision="points")
    loader = DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=lambda samples: samples)
    with pytest.raises(DataError) as caught:
        list(loader)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"{path}: cannot read image")


def test_dataset_args_the_dataset_does_not_take_are_named(camvid_tree, tmp_path, capsys):
    from agmm.cli import main
    from agmm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"dataset 'camvid' does not take 'num_images'; valid: "):
        build_dataset("camvid", root=camvid_tree, split="train", num_images=3)
    argv = ["train", "--config", "synthetic/demo", "data.name=camvid", f"data.root={camvid_tree}"]
    assert main([*argv, f"output_dir={tmp_path}/run"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "data.dataset_args: dataset 'camvid' does not take" in error
