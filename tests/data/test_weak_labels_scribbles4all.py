"""Scribbles4All releases: fixtures drawn the way the release's generator draws them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from agmm.data import build_dataset
from agmm.data.weak_labels.scribbles4all import (
    convert_scribbles4all,
    find_s4_scribbles,
    main,
    read_s4_scribble,
)
from agmm.errors import DataError, LabelError

from .conftest import save_grey, save_palette, save_rgb


def draw_like_s4(dense_path: Path, out_path: Path, strokes: list[list[tuple[int, int]]]) -> None:
    """What s4ScribbleGenerator/create_scribble.py does: read the dense label as BGR colour, fill
    with (0, 0, 0), draw each stroke (x, y points) in the dense label's colour under its first
    point with thickness 3, write with cv2.imwrite (a 3-channel PNG). The generator only keeps
    strokes inside their region; here a stroke is clipped to it."""
    dense = cv2.imread(str(dense_path), cv2.IMREAD_COLOR)
    scribbles = np.zeros_like(dense)
    for stroke in strokes:
        x, y = stroke[0]
        colour = tuple(int(c) for c in dense[y, x])
        line = cv2.polylines(np.zeros_like(dense), [np.array(stroke, np.int32)], False, colour, 3)
        inside = (line.any(axis=2)) & (dense == dense[y, x]).all(axis=2)
        scribbles[inside] = dense[y, x]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_path), scribbles)
    out_path.with_suffix(".h5").write_bytes(b"\x89HDF\r\n\x1a\n")  # the polylines' sidecar


def _expected(dense_ids: np.ndarray, scribble_path: Path, id_map) -> np.ndarray:
    drawn = cv2.imread(str(scribble_path), cv2.IMREAD_GRAYSCALE) > 0
    return np.where(drawn, np.vectorize(id_map)(dense_ids), 255).astype(np.uint8)


def test_cityscapes_scribbles_become_train_ids_that_the_dataset_reads(cityscapes_tree, tmp_path):
    s4 = tmp_path / "s4Cityscapes"
    for city, frame in (("frankfurt", "000000_000294"), ("lindau", "000001_000019")):
        name = f"{city}_{frame}_gtFine_labelIds.png"
        dense = cityscapes_tree / "gtFine" / "val" / city / name
        draw_like_s4(dense, s4 / "scribbles/gtFine/train" / city / name, [[(5, 5), (10, 6)]])
    weak_dir = tmp_path / "weak"
    summary = convert_scribbles4all(s4, "s4Cityscapes", weak_dir)
    assert summary["images"] == 2 and 0 < summary["labeled_fraction"] < 1
    assert sorted(p.name for p in weak_dir.iterdir()) == [
        "frankfurt_000000_000294.png",
        "lindau_000001_000019.png",
    ]

    dataset = build_dataset(
        "cityscapes",
        root=cityscapes_tree,
        split="val",
        supervision="scribbles",
        weak_label_dir=weak_dir,
    )
    for index in range(len(dataset)):
        sample = dataset[index]
        weak, mask = np.asarray(sample["weak_label"]), np.asarray(sample["mask"])
        labeled = weak != 255
        assert labeled.sum() > 5
        assert (weak[labeled] == mask[labeled]).all()  # scribbles agree with the dense trainIds


def test_kitti360_names_include_the_drive_and_its_extra_ids_map_to_train_ids(tmp_path):
    dense = np.zeros((12, 16), np.uint8)
    dense[:, 0:4], dense[:, 4:8], dense[:, 8:12], dense[:, 12:16] = 34, 37, 38, 26
    save_grey(tmp_path / "dense.png", dense)
    s4 = tmp_path / "s4KITTI360" / "train"
    for drive in ("2013_05_28_drive_0000_sync", "2013_05_28_drive_0002_sync"):
        strokes = [[(x, 1), (x, 10)] for x in (1, 5, 9, 13)]
        draw_like_s4(
            tmp_path / "dense.png", s4 / drive / "image_00/scribble/0000000250.png", strokes
        )
    found = find_s4_scribbles(tmp_path / "s4KITTI360", "s4kitti360")
    assert sorted(found) == [
        "2013_05_28_drive_0000_sync_0000000250",
        "2013_05_28_drive_0002_sync_0000000250",
    ]
    labels = read_s4_scribble(next(iter(found.values())), "s4kitti360")
    # garage -> building (2), smallpole -> pole (5), lamp -> unlabeled, car -> 13
    assert labels[5, 1] == 2 and labels[5, 5] == 5 and labels[5, 9] == 255 and labels[5, 13] == 13
    assert set(np.unique(labels)) == {2, 5, 13, 255}


def test_ade20k_values_shift_down_by_one(ade_tree, tmp_path):
    dense = ade_tree / "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png"
    out = tmp_path / "s4ADE20K/scribbles/training/ADE_val_00000001.png"
    draw_like_s4(dense, out, [[(1, 1), (14, 1)], [(1, 6), (14, 6)], [(1, 10), (14, 10)]])
    dense_ids = cv2.imread(str(dense), cv2.IMREAD_GRAYSCALE)
    expected = _expected(dense_ids, out, lambda v: 255 if v == 0 else v - 1)
    np.testing.assert_array_equal(read_s4_scribble(out, "s4ade20k"), expected)
    assert {149, 0} & set(np.unique(expected).tolist())


def test_pascal_colour_and_grey_scribbles_read_alike(tmp_path):
    dense = np.zeros((12, 16), np.uint8)
    dense[2:10, 2:8], dense[2:10, 8:14], dense[0, :] = 1, 15, 255  # aeroplane, person, border
    save_palette(tmp_path / "SegmentationClass/2007_000032.png", dense)
    save_grey(tmp_path / "SegmentationClassAug/2007_000032.png", dense)
    strokes = [[(3, 5), (6, 5)], [(9, 5), (12, 5)], [(1, 0), (14, 0)], [(0, 11), (15, 11)]]
    colour, grey = tmp_path / "colour/2007_000032.png", tmp_path / "grey/2007_000032.png"
    draw_like_s4(tmp_path / "SegmentationClass/2007_000032.png", colour, strokes)
    draw_like_s4(tmp_path / "SegmentationClassAug/2007_000032.png", grey, strokes)
    assert cv2.imread(str(colour))[5, 4].tolist() == [0, 0, 128]  # BGR of VOC's aeroplane
    from_colour = read_s4_scribble(colour, "s4pascal")
    np.testing.assert_array_equal(from_colour, read_s4_scribble(grey, "s4pascal"))
    assert from_colour[5, 4] == 1 and from_colour[5, 10] == 15
    assert from_colour[0, 5] == 255 and from_colour[11, 5] == 255  # border, background: unlabeled
    assert list(find_s4_scribbles(tmp_path / "grey", "s4Pascal")) == ["2007_000032"]


def test_cityscapes_scribbles_drawn_from_colour_labels_read_like_those_from_ids(tmp_path):
    ids = np.zeros((12, 16), np.uint8)
    ids[:, 0:4], ids[:, 4:8], ids[:, 8:12], ids[:, 12:16] = 11, 17, 18, 4  # building, pole,
    save_grey(tmp_path / "x_gtFine_labelIds.png", ids)  # polegroup (pole's colour), static
    colours = {11: (70, 70, 70), 17: (153, 153, 153), 18: (153, 153, 153), 4: (0, 0, 0)}
    rgb = np.zeros((12, 16, 3), np.uint8)
    for label_id, colour in colours.items():
        rgb[ids == label_id] = colour
    save_rgb(tmp_path / "x_gtFine_color.png", rgb)  # only grey colours: must not pass for ids
    strokes = [[(x, 1), (x, 10)] for x in (1, 5, 9, 13)]
    draw_like_s4(
        tmp_path / "x_gtFine_labelIds.png", tmp_path / "s4/a/x_gtFine_labelIds.png", strokes
    )
    draw_like_s4(tmp_path / "x_gtFine_color.png", tmp_path / "s4/b/x_gtFine_color.png", strokes)
    from_ids = read_s4_scribble(tmp_path / "s4/a/x_gtFine_labelIds.png", "s4cityscapes")
    from_colours = read_s4_scribble(tmp_path / "s4/b/x_gtFine_color.png", "s4cityscapes")
    assert from_ids[5, 1] == 2 and from_ids[5, 5] == 5 and from_ids[5, 9] == 255  # polegroup
    assert from_colours[5, 9] == 5  # polegroup has pole's colour: read as pole
    same = np.r_[0:8, 12:16]  # building, pole, static: the same either way
    np.testing.assert_array_equal(from_ids[:, same], from_colours[:, same])


def test_values_a_release_cannot_hold_are_label_errors_naming_the_file(tmp_path):
    save_grey(tmp_path / "a_gtFine_labelIds.png", np.full((4, 4), 40, np.uint8))
    with pytest.raises(LabelError, match=r"a_gtFine_labelIds.png: values \[40\]"):
        read_s4_scribble(tmp_path / "a_gtFine_labelIds.png", "s4cityscapes")
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[1, 1] = (10, 20, 30)
    cv2.imwrite(str(tmp_path / "b.png"), rgb)
    with pytest.raises(LabelError, match="grey-level label ids"):
        read_s4_scribble(tmp_path / "b.png", "s4ade20k")
    with pytest.raises(LabelError, match="neither ids nor label colours of s4pascal"):
        read_s4_scribble(tmp_path / "b.png", "s4pascal")


def test_missing_files_folders_and_releases_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_s4_scribble(tmp_path / "none.png", "s4ade20k")
    with pytest.raises(DataError, match="does not exist"):
        find_s4_scribbles(tmp_path / "s4ADE20K", "s4ade20k")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="extract the archives first"):
        find_s4_scribbles(tmp_path / "empty", "s4ade20k")
    with pytest.raises(DataError, match="valid:"):
        find_s4_scribbles(tmp_path, "s4coco")


def test_command_line_converts_a_release(tmp_path, capsys):
    save_grey(tmp_path / "s4ADE20K/scribbles/training/ADE_train_00000001.png", np.eye(8) * 3)
    assert main(["s4ade20k", str(tmp_path / "s4ADE20K"), str(tmp_path / "weak")]) == 0
    assert "1 s4ade20k scribble maps" in capsys.readouterr().out
    written = cv2.imread(str(tmp_path / "weak/ADE_train_00000001.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(written, np.where(np.eye(8) > 0, 2, 255))
    assert main(["s4ade20k", str(tmp_path / "nowhere"), str(tmp_path / "weak")]) == 1
