"""Weak-label readers, each on a tiny file written here in the real on-disk format."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from agmm.data.weak_labels.readers import (
    LABEL_PNG_CONVENTIONS,
    coco_category_map,
    read_boxes_json,
    read_coco_boxes,
    read_label_png,
    read_scribblesup_xml,
    read_tags_json,
    read_tags_list,
    read_tags_npy,
    read_voc_boxes,
    read_whats_the_point_json,
    tags_from_label,
)
from agmm.errors import DataError, LabelError
from agmm.runtime.constants import CITYSCAPES_LABELID_TO_TRAINID, VOC_CLASSES

# ------------------------------------------------------------------------------------ label PNGs


def write_png(path, array, palette=False):
    image = Image.fromarray(np.asarray(array, np.uint8))
    if palette:  # VOC-style palette PNG: colours differ from the indices
        colours = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)
        image.putpalette(colours.ravel().tolist())
        assert image.mode == "P"
    image.save(path)
    return path


@pytest.mark.parametrize("palette", [False, True])
def test_voc_point_png_reads_indices(tmp_path, palette):
    label = np.full((6, 8), 255, np.uint8)
    label[1, 2], label[4, 5] = 15, 0
    path = write_png(tmp_path / "2007_000032.png", label, palette=palette)
    np.testing.assert_array_equal(read_label_png(path, **LABEL_PNG_CONVENTIONS["voc"]), label)


def test_class_count_as_unlabeled_only_when_asked(tmp_path):
    label = np.full((4, 4), 21, np.uint8)
    label[0, 0] = 3
    path = write_png(tmp_path / "2007_000033.png", label)
    with pytest.raises(LabelError, match=r"2007_000033\.png.*\[21\].*unlabeled_values=\(255, 21\)"):
        read_label_png(path, num_classes=21)
    out = read_label_png(path, **LABEL_PNG_CONVENTIONS["voc-21-unlabeled"])
    assert out[0, 0] == 3 and (out.ravel()[1:] == 255).all()


def test_ade20k_blocks_reduce_zero_label(tmp_path):
    raw = np.array([[0, 1, 150], [255, 2, 0]], np.uint8)
    path = write_png(tmp_path / "ADE_train_00000001.png", raw)
    out = read_label_png(path, **LABEL_PNG_CONVENTIONS["ade20k"])
    np.testing.assert_array_equal(out, [[255, 0, 149], [255, 1, 255]])
    write_png(path, np.array([[151]]))
    with pytest.raises(LabelError, match="ADE_train_00000001"):
        read_label_png(path, **LABEL_PNG_CONVENTIONS["ade20k"])


def test_cityscapes_clicks_map_label_ids_to_train_ids(tmp_path):
    raw = np.array([[0, 7, 26, 33], [255, 4, 24, 255]], np.uint8)  # unlabeled, road, car, bicycle
    path = write_png(tmp_path / "aachen_000000_000019_gtFine_labelIds.png", raw)
    out = read_label_png(path, **LABEL_PNG_CONVENTIONS["cityscapes-labelids"])
    np.testing.assert_array_equal(out, [[255, 0, 13, 18], [255, 255, 11, 255]])
    assert sorted(v for v in CITYSCAPES_LABELID_TO_TRAINID.values() if v != 255) == list(range(19))
    write_png(path, np.array([[40]]))
    with pytest.raises(LabelError, match=r"labelIds\.png.*\[40\]"):
        read_label_png(path, **LABEL_PNG_CONVENTIONS["cityscapes-labelids"])


def test_bad_label_files_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.png"):
        read_label_png(tmp_path / "missing.png", num_classes=3)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match="corrupt.png"):
        read_label_png(corrupt, num_classes=3)
    rgb = tmp_path / "colour.png"
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(rgb)
    with pytest.raises(LabelError, match="colour.png"):
        read_label_png(rgb, num_classes=3)


def test_camvid_label_reads_with_its_convention(camvid):
    path = sorted((camvid / "labels" / "train").glob("*.png"))[0]
    label = read_label_png(path, **LABEL_PNG_CONVENTIONS["camvid"])
    assert label.shape == (360, 480) and set(np.unique(label)) <= set(range(11)) | {255}


# --------------------------------------------------------------------------------------- clicks

# "What's the point" pascal2012_trainval_main.json: image id -> clicks, cls 1..20, rank = order.
CLICKS = {
    "2008_000008": [
        {"cls": 13, "x": 3, "y": 2, "rank": 1},
        {"cls": 15, "x": 8, "y": 6, "rank": 2},
    ],
    "2008_000015": [],
}


def test_whats_the_point_clicks_become_disks(tmp_path):
    path = tmp_path / "pascal2012_trainval_main.json"
    path.write_text(json.dumps(CLICKS))
    sizes = {"2008_000008": (10, 12), "2008_000015": (5, 5)}
    dots = read_whats_the_point_json(path, image_sizes=sizes)
    assert dots["2008_000008"][2, 3] == 13 and dots["2008_000008"][6, 8] == 15
    assert (dots["2008_000008"] != 255).sum() == 2
    assert (dots["2008_000015"] == 255).all()
    disks = read_whats_the_point_json(path, image_sizes=sizes, radius=2)
    assert (disks["2008_000008"] == 13).sum() == 13  # a radius-2 disk: 13 pixels


def test_whats_the_point_errors_name_the_file(tmp_path):
    path = tmp_path / "clicks.json"
    path.write_text(json.dumps(CLICKS))
    with pytest.raises(LabelError, match=r"clicks\.json.*2008_000099"):
        read_whats_the_point_json(path, image_sizes={"2008_000099": (5, 5)})
    assert (
        read_whats_the_point_json(path, image_sizes={"2008_000099": (5, 5)}, allow_missing=True)[
            "2008_000099"
        ]
        == 255
    ).all()
    with pytest.raises(LabelError, match=r"clicks\.json.*outside"):
        read_whats_the_point_json(path, image_sizes={"2008_000008": (4, 4)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = read_whats_the_point_json(
            path, image_sizes={"2008_000008": (4, 4)}, skip_out_of_bounds=True
        )
    assert "skipped 1 click" in str(caught[0].message)
    assert (out["2008_000008"] != 255).sum() == 1
    with pytest.raises(LabelError, match="class 15"):
        read_whats_the_point_json(path, image_sizes={"2008_000008": (10, 12)}, num_classes=14)
    with pytest.raises(DataError, match="nope.json"):
        read_whats_the_point_json(tmp_path / "nope.json", image_sizes={})


# ------------------------------------------------------------------------------------ scribbles

SCRIBBLE_XML = """<annotation>
\t<folder>anno</folder>
\t<filename>2007_000032.png</filename>
\t<size><width>20</width><height>10</height><depth>3</depth></size>
\t<segmented>1</segmented>
\t<polygon>
\t\t<tag>{tag}</tag>
\t\t<point><X>2</X><Y>2</Y></point>
\t\t<point><X>12</X><Y>2</Y></point>
\t\t<point><X>12</X><Y>7</Y></point>
\t</polygon>
\t<polygon>
\t\t<tag>background</tag>
\t\t<point><X>1</X><Y>9</Y></point>
\t\t<point><X>18</X><Y>9</Y></point>
\t</polygon>
</annotation>
"""


def test_scribblesup_xml_draws_polylines(tmp_path):
    path = tmp_path / "2007_000032.xml"
    path.write_text(SCRIBBLE_XML.format(tag="aeroplane"))
    label = read_scribblesup_xml(path, class_names=VOC_CLASSES)
    assert label.shape == (10, 20)
    assert (label[2, 2:13] == 1).all() and (label[2:8, 12] == 1).all()
    assert (label[9, 1:19] == 0).all()
    assert (label != 255).sum() == 11 + 5 + 18
    thick = read_scribblesup_xml(path, class_names=VOC_CLASSES, width=3)
    assert (thick != 255).sum() > (label != 255).sum()


def test_scribblesup_errors_name_the_file(tmp_path):
    path = tmp_path / "2007_000039.xml"
    path.write_text(SCRIBBLE_XML.format(tag="spaceship"))
    with pytest.raises(LabelError, match=r"2007_000039\.xml.*spaceship"):
        read_scribblesup_xml(path, class_names=VOC_CLASSES)
    path.write_text(SCRIBBLE_XML.format(tag="aeroplane"))
    with pytest.raises(LabelError, match=r"2007_000039\.xml.*\(10, 20\)"):
        read_scribblesup_xml(path, class_names=VOC_CLASSES, size=(10, 21))
    path.write_text(SCRIBBLE_XML.format(tag="aeroplane").replace("<X>18</X>", "<X>25</X>"))
    with pytest.raises(LabelError, match="outside"):
        read_scribblesup_xml(path, class_names=VOC_CLASSES)
    assert (read_scribblesup_xml(path, class_names=VOC_CLASSES, clip=True)[9, 1:] == 0).all()
    path.write_text("<annotation><polygon>")
    with pytest.raises(DataError, match="2007_000039"):
        read_scribblesup_xml(path, class_names=VOC_CLASSES)


# ---------------------------------------------------------------------------------------- boxes

VOC_XML = """<annotation>
\t<folder>VOC2012</folder>
\t<filename>2007_000032.jpg</filename>
\t<size><width>500</width><height>281</height><depth>3</depth></size>
\t<segmented>1</segmented>
\t<object><name>{name}</name><pose>Frontal</pose><truncated>0</truncated><difficult>0</difficult>
\t\t<bndbox><xmin>104</xmin><ymin>78</ymin><xmax>{xmax}</xmax><ymax>183</ymax></bndbox></object>
\t<object><name>person</name><pose>Left</pose><truncated>1</truncated><difficult>1</difficult>
\t\t<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>281</ymax></bndbox></object>
</annotation>
"""


def test_voc_xml_boxes_become_pixel_edges(tmp_path):
    path = tmp_path / "2007_000032.xml"
    path.write_text(VOC_XML.format(name="aeroplane", xmax=375))
    boxes = read_voc_boxes(path, VOC_CLASSES)
    assert boxes.dtype == np.float32
    np.testing.assert_array_equal(boxes, [[103, 77, 375, 183, 1], [0, 0, 10, 281, 15]])
    assert len(read_voc_boxes(path, VOC_CLASSES, skip_difficult=True)) == 1


@pytest.mark.parametrize(
    "name, xmax, message",
    [("zeppelin", 375, "zeppelin"), ("aeroplane", 501, "outside"), ("aeroplane", 103, "zero area")],
)
def test_bad_voc_boxes_name_the_file(tmp_path, name, xmax, message):
    path = tmp_path / "2007_000123.xml"
    path.write_text(VOC_XML.format(name=name, xmax=xmax))
    with pytest.raises(LabelError, match=rf"2007_000123\.xml.*{message}"):
        read_voc_boxes(path, VOC_CLASSES)


def coco_file(tmp_path, bbox=(10.5, 20.0, 30.0, 40.0), category=18):
    data = {
        "images": [{"id": 9, "file_name": "000000000009.jpg", "height": 100, "width": 120}],
        "annotations": [
            {"id": 1, "image_id": 9, "category_id": category, "bbox": list(bbox), "iscrowd": 0},
            {"id": 2, "image_id": 9, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
    }
    path = tmp_path / "instances_train2017.json"
    path.write_text(json.dumps(data))
    return path, data


def test_coco_boxes_from_path_dict_and_coco_object(tmp_path):
    from pycocotools.coco import COCO

    path, data = coco_file(tmp_path)
    category_map = coco_category_map(path)
    assert category_map == {1: 1, 18: 2}
    expected = [[10.5, 20.0, 40.5, 60.0, 2]]
    np.testing.assert_array_equal(read_coco_boxes(path, 9, category_map), expected)
    np.testing.assert_array_equal(read_coco_boxes(data, 9, category_map), expected)
    np.testing.assert_array_equal(read_coco_boxes(COCO(str(path)), 9, category_map), expected)
    assert len(read_coco_boxes(path, 9, category_map, include_crowd=True)) == 2


def test_bad_coco_boxes_name_the_file(tmp_path):
    path, _ = coco_file(tmp_path, category=77)
    with pytest.raises(LabelError, match=r"instances_train2017\.json.*category id 77"):
        read_coco_boxes(path, 9, {1: 1, 18: 2})
    path, _ = coco_file(tmp_path, bbox=(100, 20, 40, 10))
    with pytest.raises(LabelError, match=r"instances_train2017\.json.*outside"):
        read_coco_boxes(path, 9, {1: 1, 18: 2})
    path, _ = coco_file(tmp_path, bbox=(10, 20, 0, 10))
    with pytest.raises(LabelError, match="zero area"):
        read_coco_boxes(path, 9, {1: 1, 18: 2})
    path, _ = coco_file(tmp_path, bbox=(100, 20, 20.4, 10))  # rounding past the border: clipped
    assert read_coco_boxes(path, 9, {1: 1, 18: 2})[0, 2] == 120
    with pytest.raises(LabelError, match="no image with id 5"):
        read_coco_boxes(path, 5, {1: 1, 18: 2})


# ----------------------------------------------------------------------------------------- tags


def test_cls_labels_npy_with_string_and_int_keys(tmp_path):
    vector = np.zeros(20, np.float32)
    vector[[0, 14]] = 1  # aeroplane, person
    path = tmp_path / "cls_labels.npy"
    np.save(path, {"2007_000032": vector, 2007000039: vector})  # SEAM/ToCo str keys, IRN int keys
    tags = read_tags_npy(path, num_classes=21, class_offset=1, background_index=0)
    assert set(tags) == {"2007_000032", "2007_000039"}
    np.testing.assert_array_equal(np.flatnonzero(tags["2007_000039"]), [0, 1, 15])
    with pytest.raises(LabelError, match=r"cls_labels\.npy.*exceeds"):
        read_tags_npy(path, num_classes=20, class_offset=1)
    with pytest.raises(DataError, match="absent.npy"):
        read_tags_npy(tmp_path / "absent.npy", num_classes=21)


def test_tags_list_file(tmp_path):
    path = tmp_path / "train_tags.txt"
    path.write_text("# name classes\n2007_000032 1 15\n\n2007_000039 person\n")
    tags = read_tags_list(path, num_classes=21, class_names=VOC_CLASSES)
    np.testing.assert_array_equal(np.flatnonzero(tags["2007_000032"]), [1, 15])
    np.testing.assert_array_equal(np.flatnonzero(tags["2007_000039"]), [15])
    path.write_text("2007_000032 1 21\n")
    with pytest.raises(LabelError, match=r"train_tags\.txt:1.*'21'"):
        read_tags_list(path, num_classes=21)


def test_tags_from_label_ignores_unlabeled():
    label = np.array([[0, 3, 255], [3, 255, 255]], np.uint8)
    np.testing.assert_array_equal(tags_from_label(label, 4), [1, 0, 0, 1])
    np.testing.assert_array_equal(tags_from_label(label, 4, min_pixels=2), [0, 0, 0, 1])


def test_make_labels_sidecars_read_back(tmp_path):
    (tmp_path / "boxes.json").write_text(json.dumps({"boxes": {"a": [[1, 2, 3, 4, 1]], "b": []}}))
    boxes = read_boxes_json(tmp_path / "boxes.json")
    assert boxes["a"].shape == (1, 5) and boxes["b"].shape == (0, 5)
    (tmp_path / "tags.json").write_text(json.dumps({"tags": {"a": [0, 2]}}))
    np.testing.assert_array_equal(
        read_tags_json(tmp_path / "tags.json", num_classes=3)["a"], [1, 0, 1]
    )
    (tmp_path / "tags.json").write_text(json.dumps({"tags": {"a": [3]}}))
    with pytest.raises(LabelError, match=r"tags\.json"):
        read_tags_json(tmp_path / "tags.json", num_classes=3)


def test_id_map_may_be_a_lookup_table(tmp_path):
    path = write_png(tmp_path / "labelids.png", np.array([[0, 7, 26]], np.uint8))
    table = np.full(34, 255, np.int64)
    table[7], table[26] = 0, 13
    out = read_label_png(path, num_classes=19, id_map=table)
    np.testing.assert_array_equal(out, [[255, 0, 13]])
