"""Weak-label sources: one per supervision kind, chosen when the dataset is built, and simulated
labels made afresh on every read (no cache that grows with the split)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from agmm.data import build_dataset
from agmm.data.datasets import base
from agmm.data.weak_labels.simulate import image_rng, simulate_weak_label
from agmm.data.weak_labels.sources import (
    DenseMaskSource,
    FileOrMaskSource,
    FileSource,
    LabelSpace,
    NativeBoxSource,
    SimulatedSource,
    TagTableSource,
    read_tag_table,
)


def synthetic(**kwargs):
    return build_dataset("synthetic", root=None, split="train", num_images=6, **kwargs)


def test_sources_are_chosen_once_when_the_dataset_is_built(monkeypatch):
    names = synthetic().names
    calls = []
    choose = base.choose_sources
    monkeypatch.setattr(base, "choose_sources", lambda **kw: calls.append(kw) or choose(**kw))
    dataset = synthetic(supervision="mixed", supervision_map=dict(zip(names, base.SUPERVISIONS)))
    sources = {kind: dataset.sources[kind] for kind in base.SUPERVISIONS}
    for _ in range(2):
        for index in range(len(dataset)):
            dataset[index]
    assert len(calls) == 1
    assert all(dataset.sources[kind] is source for kind, source in sources.items())


def test_without_folders_full_is_the_mask_and_every_other_kind_is_simulated():
    sources = synthetic(supervision="points").sources
    assert isinstance(sources["full"], DenseMaskSource)
    for kind in ("points", "scribbles", "blocks", "boxes", "tags"):
        assert isinstance(sources[kind], SimulatedSource) and sources[kind].kind == kind
    assert sources["boxes"].params == {"skip_classes": (0,)}  # background never gets a box


def test_per_kind_simulation_args_reach_only_their_kind():
    sources = synthetic(weak_label_args={"points": {"points_per_class": 3}}).sources
    assert sources["points"].params == {"points_per_class": 3}
    assert sources["blocks"].params == {}


def test_a_dataset_with_its_own_boxes_uses_them_and_simulates_the_rest(voc_tree):
    sources = build_dataset("voc", root=voc_tree, split="train", supervision="boxes").sources
    assert isinstance(sources["boxes"], NativeBoxSource)
    assert isinstance(sources["boxes"].fallback, SimulatedSource)


def test_native_boxes_fall_back_to_simulated_boxes_for_an_image_without_them(voc_tree):
    (voc_tree / "VOCdevkit" / "VOC2012" / "Annotations" / "2007_000039.xml").unlink()
    dataset = build_dataset("voc", root=voc_tree, split="train", supervision="boxes")
    raw = dataset.read_raw(1)
    expected = simulate_weak_label(
        raw["mask"],
        "boxes",
        rng=image_rng(0, "2007_000039"),
        num_classes=21,
        instance_mask=raw["instance_mask"],
        skip_classes=(0,),
    )
    assert np.array_equal(dataset[1]["boxes"].numpy(), expected["boxes"])
    assert sorted(dataset[0]["boxes"][:, 4].tolist()) == [1.0, 15.0]  # its XML


def test_folders_give_file_sources_and_full_keeps_the_mask_where_a_png_is_missing(
    camvid_tree, tmp_path, files
):
    files.save_grey(tmp_path / "pseudo" / "0001TP_000v.png", np.full(files.hw, 4, np.uint8))
    dataset = build_dataset(
        "camvid", root=camvid_tree, split="val", weak_label_dir=tmp_path / "pseudo"
    )
    assert isinstance(dataset.sources["full"], FileOrMaskSource)
    assert isinstance(dataset.sources["full"].files, FileSource)
    assert (dataset[0]["weak_label"] == 4).all()
    assert torch.equal(dataset[1]["weak_label"], dataset[1]["mask"])


def test_a_tag_file_is_a_tag_table_source(voc_tree, tmp_path):
    tags = np.zeros(20, np.float32)
    tags[14] = 1
    np.save(tmp_path / "cls_labels.npy", {"2007_000032": tags, "2007_000039": tags})
    dataset = build_dataset(
        "voc", root=voc_tree, split="train", supervision="tags",
        weak_label_dir=tmp_path / "cls_labels.npy",
    )  # fmt: skip
    assert isinstance(dataset.sources["tags"], TagTableSource)
    assert dataset.sources["tags"].location == tmp_path / "cls_labels.npy"


def test_the_three_tag_table_formats_read_the_same_tags(tmp_path):
    labels = LabelSpace(classes=("background", "cat", "dog", "person"), has_background=True)
    np.save(tmp_path / "cls_labels.npy", {"a": np.array([0, 1, 1], np.float32)})  # no background
    (tmp_path / "tags.json").write_text('{"tags": {"a": [0, 2, 3]}}')
    (tmp_path / "tags.txt").write_text("a background dog person\n")
    tables = [
        read_tag_table(tmp_path / f, labels) for f in ("cls_labels.npy", "tags.json", "tags.txt")
    ]
    for table in tables:
        assert table["a"].tolist() == [1.0, 0.0, 1.0, 1.0]


def test_simulated_labels_are_made_afresh_so_reading_keeps_no_per_image_state():
    dataset = synthetic(supervision="scribbles")
    pickled = len(pickle.dumps(dataset))  # what each DataLoader worker receives
    first = dataset[2]
    first["weak_label"].fill_(0)
    first["tags"].fill_(0)
    for index in range(len(dataset)):
        dataset[index]
    assert len(pickle.dumps(dataset)) == pickled
    again, fresh = dataset[2], synthetic(supervision="scribbles")[2]
    for key in ("weak_label", "boxes", "tags"):
        assert torch.equal(again[key], fresh[key])


@pytest.mark.parametrize("kind", ["points", "boxes"])
def test_mixed_folders_are_tried_in_the_order_given(tmp_path, kind):
    from agmm.data.weak_labels.make_labels import make_labels

    full = synthetic()
    for folder in ("points", "boxes"):
        make_labels(full, folder, tmp_path / folder, progress=False)
    order = [kind] + [k for k in ("points", "boxes") if k != kind]
    dataset = synthetic(supervision="mixed", weak_label_dir={k: tmp_path / k for k in order})
    assert list(dataset.sources.folders) == order
    assert dataset.kinds == [kind] * 6
