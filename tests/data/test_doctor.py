"""`agmm check-labels`: reports every problem with the file it is in; exit code 1 on errors."""

from __future__ import annotations

import numpy as np

from agmm.cli import main
from agmm.data.doctor import check_labels, detect_dataset, guess_unlabeled_value


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(["check-labels", *args])
    return code, capsys.readouterr().out


def test_a_clean_dataset_passes(camvid_tree, capsys):
    code, out = run(capsys, "--data", str(camvid_tree))
    assert code == 0, out
    assert "split train: 3 images, 3 dense masks" in out and "split val: 2 images" in out
    assert "OK: no errors" in out
    assert "road" in out  # the per-class table


def test_every_problem_is_reported_with_its_file(camvid_tree, files, capsys):
    labels = camvid_tree / "labels" / "train"
    (labels / "0001TP_000t.png").unlink()  # missing label
    files.save_grey(labels / "0001TP_001t.png", np.zeros((5, 7), np.uint8))  # size mismatch
    bad = np.zeros(files.hw, np.uint8)
    bad[0, 0] = 37
    files.save_grey(labels / "0001TP_002t.png", bad)  # value outside the classes
    files.save_grey(labels / "orphan.png", bad)  # a label without an image
    code, out = run(capsys, "--data", "camvid", "--root", str(camvid_tree), "--split", "train")
    assert code == 1
    assert "0001TP_000t.png: label of image 0001TP_000t.png is missing" in out
    assert "0001TP_001t.png: label is 7x5 (WxH) but its image 0001TP_001t.png is 16x12" in out
    assert "0001TP_002t.png: has label value(s) 37" in out
    assert "orphan.png" in out and "without an image" in out
    assert "FAILED: 3 error(s)" in out


def test_weak_labels_guess_21_as_unlabeled_and_report_labeled_fraction(voc_tree, tmp_path, files):
    weak_dir = tmp_path / "points"
    for name in ("2007_000032", "2007_000039"):
        label = np.full(files.hw, 21, np.uint8)
        label[5, 5] = 0
        label[6, 6] = 1
        files.save_grey(weak_dir / f"{name}.png", label)
    report = check_labels("voc", root=voc_tree, splits=["train"], weak_label_dir=weak_dir)
    assert report.ok, report.splits[0].errors
    split = report.splits[0]
    assert split.unlabeled_guess.startswith("21 = the class count")
    assert split.weak_found == 2 and split.weak_pixels[0] == 2 and split.weak_pixels[1] == 2
    assert "person" in split.never_labeled  # present in the masks, never clicked
    strict = check_labels(
        "voc", root=voc_tree, splits=["train"], weak_label_dir=weak_dir, unlabeled_values=[255]
    )
    assert not strict.ok
    assert any("2007_000032.png" in e and "21" in e for e in strict.splits[0].errors)


def test_missing_weak_labels_are_a_warning(voc_tree, tmp_path, files, capsys):
    weak_dir = tmp_path / "scribbles"
    files.save_grey(weak_dir / "2007_000032.png", np.full(files.hw, 255, np.uint8))
    files.save_grey(weak_dir / "1999_000000.png", np.full(files.hw, 255, np.uint8))
    code, out = run(
        capsys, "--data", "voc", "--root", str(voc_tree), "--split", "train",
        "--weak-label-dir", str(weak_dir),
    )  # fmt: skip
    assert code == 0, out
    assert "1 image(s) have no weak label" in out and "2007_000039" in out
    assert "1 weak-label file(s)" in out and "match no image" in out


def test_an_unknown_split_given_explicitly_is_an_error(camvid_tree, capsys):
    code, out = run(capsys, "--data", "camvid", "--root", str(camvid_tree), "--split", "test")
    assert code == 1 and "test" in out


def test_the_layout_is_detected_from_a_folder(voc_tree, coco_tree, cityscapes_tree, ade_tree):
    assert detect_dataset(voc_tree) == "voc"
    assert detect_dataset(coco_tree) == "coco"
    assert detect_dataset(cityscapes_tree) == "cityscapes"
    assert detect_dataset(ade_tree / "ADEChallengeData2016") == "ade20k"


def test_guess_of_the_unlabeled_value():
    assert guess_unlabeled_value({255: 990, 3: 10}, 11).startswith("255")
    assert "class count" in guess_unlabeled_value({21: 990, 3: 10}, 21)
    assert "shifted" in guess_unlabeled_value({0: 900, 150: 50, 3: 50}, 150)
    assert guess_unlabeled_value({}, 5) is None


def test_the_real_camvid_val_split(camvid, capsys):
    code, out = run(capsys, "--data", str(camvid), "--split", "val", "--max-images", "4")
    assert code == 0, out
    assert "split val" in out


def test_make_labels_then_check_labels_from_the_command_line(tmp_path, capsys):
    out_dir = tmp_path / "points"
    assert main(["make-labels", "--data", "synthetic", "--split", "val", "--kind", "points",
                 "--out", str(out_dir), "--no-progress"]) == 0  # fmt: skip
    assert len(list(out_dir.glob("synthetic_val_*.png"))) == 64
    capsys.readouterr()
    code, out = run(
        capsys, "--data", "synthetic", "--split", "val", "--weak-label-dir", str(out_dir)
    )
    assert code == 0, out
    assert "64 found, 0 missing" in out and "unlabeled value guess: 255" in out


def test_an_unreadable_image_is_named_and_its_label_is_not_called_extra(camvid_tree, capsys):
    image = camvid_tree / "images" / "train" / "0001TP_001t.png"
    image.write_bytes(image.read_bytes()[:60])  # truncated: the header reads, the pixels do not
    code, out = run(capsys, "--data", "camvid", "--root", str(camvid_tree), "--split", "train")
    assert code == 1
    assert f"ERROR {image}: cannot read image" in out
    assert "extra label files: 0" in out and "without an image" not in out


def test_boxes_in_json_sidecars_count_as_labels(camvid_tree, tmp_path, capsys):
    import json

    boxes = tmp_path / "boxes"
    boxes.mkdir()
    for name in ("0001TP_000t", "0001TP_001t", "0001TP_002t"):  # boxes of classes 0, 3, 5 and 8
        rows = [[0, 0, 4, 4, c] for c in (0, 3, 5, 8)]
        (boxes / f"{name}.json").write_text(json.dumps({"boxes": rows}))
    code, out = run(
        capsys, "--data", "camvid", "--root", str(camvid_tree), "--split", "train",
        "--weak-label-dir", str(boxes),
    )  # fmt: skip
    assert code == 0, out
    assert "weak labels: 3 found, 0 missing" in out
    assert "classes never labeled" not in out
