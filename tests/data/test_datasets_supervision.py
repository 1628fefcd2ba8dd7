"""Weak labels: simulated deterministically from (seed, name), read from files with each
dataset's unlabeled convention, and mixed per image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from agmm.data import build_dataset
from agmm.errors import DataError, LabelError


def synthetic(**kwargs):
    return build_dataset("synthetic", root=None, split="train", num_images=6, **kwargs)


def test_simulated_labels_depend_only_on_seed_and_name():
    small = synthetic(supervision="scribbles")
    large = build_dataset(
        "synthetic", root=None, split="train", num_images=9, supervision="scribbles"
    )
    assert torch.equal(small[4]["weak_label"], large[4]["weak_label"])
    assert torch.equal(small[4]["weak_label"], small[4]["weak_label"])  # made again, same
    other_seed = synthetic(supervision="scribbles", seed=3)[4]
    assert not torch.equal(small[4]["weak_label"], other_seed["weak_label"])


def test_simulated_points_follow_weak_label_args_and_land_in_their_class():
    dataset = synthetic(supervision="points", weak_label_args={"points_per_class": 3})
    for index in range(3):
        sample = dataset[index]
        weak, mask = sample["weak_label"], sample["mask"]
        labeled = weak != 255
        assert torch.equal(weak[labeled], mask[labeled])
        counts = torch.bincount(weak[labeled], minlength=5)
        present = torch.bincount(mask[mask != 255], minlength=5) > 0
        assert (counts[present] == 3).all() and (counts[~present] == 0).all()
        assert sample["supervision"] == "points"


def test_tags_and_boxes_supervision_give_an_empty_weak_label():
    tags = synthetic(supervision="tags")[0]
    assert (tags["weak_label"] == 255).all() and tags["tags"].sum() >= 2
    present = torch.zeros(5)
    present[tags["mask"][tags["mask"] != 255].unique()] = 1
    assert torch.equal(tags["tags"], present)
    boxes = synthetic(supervision="boxes")[0]
    assert (boxes["weak_label"] == 255).all() and len(boxes["boxes"]) >= 1
    assert (boxes["boxes"][:, 4] != 0).all()  # no box around the background


def test_files_written_by_make_labels_read_back_equal_to_the_simulation(tmp_path):
    from agmm.data.weak_labels.make_labels import make_labels

    for kind in ("blocks", "boxes"):
        simulated = synthetic(supervision=kind, seed=7)
        make_labels(simulated, kind, tmp_path / kind, seed=7, progress=False)
        from_files = synthetic(supervision=kind, weak_label_dir=tmp_path / kind)
        for index in (0, 5):
            a, b = simulated[index], from_files[index]
            for key in ("weak_label", "boxes", "tags"):
                assert torch.equal(a[key], b[key]), (kind, key)


def test_voc_weak_pngs_accept_21_as_unlabeled_by_default_but_not_when_told_otherwise(
    voc_tree, tmp_path, files
):
    weak_dir = tmp_path / "points"
    for name in ("2007_000032", "2007_000039"):
        label = np.full(files.hw, 21, np.uint8)
        label[5, 5], label[6, 9] = 15, 0
        files.save_grey(weak_dir / f"{name}.png", label)
    dataset = build_dataset(
        "voc", root=voc_tree, split="train", supervision="points", weak_label_dir=weak_dir
    )
    assert dataset.unlabeled_values == (255, 21)
    weak = dataset[0]["weak_label"]
    assert (weak != 255).sum() == 2 and weak[5, 5] == 15 and weak[6, 9] == 0
    strict = build_dataset(
        "voc",
        root=voc_tree,
        split="train",
        supervision="points",
        weak_label_dir=weak_dir,
        unlabeled_values=(255,),
    )
    with pytest.raises(LabelError, match="2007_000032.png"):
        strict[0]


def test_ade20k_block_labels_with_zero_unlabeled(ade_tree, tmp_path, files):
    weak_dir = tmp_path / "blocks"
    label = np.zeros(files.hw, np.uint8)
    label[:4, :4] = 150  # class 149, stored + 1
    files.save_grey(weak_dir / "ADE_val_00000001.png", label)
    files.save_grey(weak_dir / "ADE_val_00000002.png", label)
    dataset = build_dataset(
        "ade20k",
        root=ade_tree,
        split="val",
        supervision="blocks",
        weak_label_dir=weak_dir,
        weak_reduce_zero_label=True,
    )
    weak = dataset[0]["weak_label"]
    assert (weak[:4, :4] == 149).all() and (weak[4:] == 255).all()


def test_mixed_supervision_from_a_map_file(tmp_path):
    names = synthetic().names
    kinds = ["points", "boxes", "tags", "full", "scribbles", "blocks"]
    map_file = tmp_path / "supervision.json"
    map_file.write_text(json.dumps(dict(zip(names, kinds))))
    dataset = synthetic(supervision="mixed", supervision_map=map_file)
    samples = [dataset[i] for i in range(6)]
    assert [s["supervision"] for s in samples] == kinds
    assert len(samples[1]["boxes"]) >= 1 and (samples[1]["weak_label"] == 255).all()
    assert (samples[2]["weak_label"] == 255).all() and samples[2]["tags"].sum() > 0
    assert torch.equal(samples[3]["weak_label"], samples[3]["mask"])
    assert (samples[0]["weak_label"] != 255).sum() < 20


def test_mixed_supervision_from_a_csv_map_with_a_default_kind(tmp_path):
    names = synthetic().names
    map_file = tmp_path / "supervision.csv"
    map_file.write_text(f"name,supervision\n{names[0]},tags\n{names[2]},full\n")
    dataset = synthetic(supervision="points", supervision_map=map_file)
    assert dataset.kinds == ["tags", "points", "full", "points", "points", "points"]


def test_mixed_supervision_from_one_weak_label_folder_per_kind(tmp_path):
    from agmm.data.weak_labels.make_labels import make_labels

    full = synthetic()
    make_labels(full, "points", tmp_path / "points", progress=False)
    make_labels(full, "boxes", tmp_path / "boxes", progress=False)
    names = full.names
    for name in names[:3]:  # the first three images only have boxes
        (tmp_path / "points" / f"{name}.png").unlink()
    for name in names[3:]:
        (tmp_path / "boxes" / f"{name}.png").unlink()
        (tmp_path / "boxes" / f"{name}.json").unlink()
    dataset = synthetic(
        supervision="mixed",
        weak_label_dir={"points": tmp_path / "points", "boxes": tmp_path / "boxes"},
    )
    assert dataset.kinds == ["boxes"] * 3 + ["points"] * 3
    assert len(dataset[0]["boxes"]) >= 1 and (dataset[4]["weak_label"] != 255).any()


def test_mixed_supervision_without_a_kind_for_an_image_is_an_error(tmp_path):
    names = synthetic().names
    map_file = tmp_path / "supervision.json"
    map_file.write_text(json.dumps({names[0]: "points"}))
    with pytest.raises(DataError, match="gives a kind for this image"):
        synthetic(supervision="mixed", supervision_map=map_file)


def test_tags_from_a_cls_labels_npy_without_background(voc_tree, tmp_path):
    tags = np.zeros(20, np.float32)
    tags[14] = 1  # person (class 15 with the background first)
    np.save(tmp_path / "cls_labels.npy", {"2007_000032": tags, 2007000039: tags})
    dataset = build_dataset(
        "voc",
        root=voc_tree,
        split="train",
        supervision="tags",
        weak_label_dir=tmp_path / "cls_labels.npy",
    )
    for index in (0, 1):
        assert dataset[index]["tags"].nonzero().flatten().tolist() == [0, 15]


def test_full_supervision_reads_pseudo_labels_from_a_folder(camvid_tree, tmp_path, files):
    pseudo = np.full(files.hw, 4, np.uint8)
    for name in ("0001TP_000v", "0001TP_001v"):
        files.save_grey(tmp_path / "pseudo" / f"{name}.png", pseudo)
    dataset = build_dataset(
        "camvid", root=camvid_tree, split="val", weak_label_dir=tmp_path / "pseudo"
    )
    sample = dataset[0]
    assert (sample["weak_label"] == 4).all() and not torch.equal(
        sample["weak_label"], sample["mask"]
    )


def test_a_split_without_masks_is_unlabeled_and_cannot_be_simulated_from(camvid_tree):
    import shutil

    shutil.rmtree(camvid_tree / "labels" / "val")
    dataset = build_dataset("camvid", root=camvid_tree, split="val", supervision="points")
    with pytest.raises(DataError, match="cannot simulate points .* no dense masks"):
        dataset[0]
    unlabeled = build_dataset("camvid", root=camvid_tree, split="val")[0]  # e.g. a test split
    assert (unlabeled["mask"] == 255).all() and (unlabeled["weak_label"] == 255).all()


def test_cityscapes_clicks_in_raw_label_ids_through_a_named_format(
    cityscapes_tree, tmp_path, files
):
    clicks = np.zeros(files.hw, np.uint8)  # labelId 0 = unlabeled
    clicks[2, 3], clicks[5, 5] = 7, 26  # road, car
    for name in ("frankfurt_000000_000294", "lindau_000001_000019"):
        files.save_grey(tmp_path / "clicks" / name.split("_")[0] / f"{name}.png", clicks)
    dataset = build_dataset(
        "cityscapes",
        root=cityscapes_tree,
        split="val",
        supervision="points",
        weak_label_dir=tmp_path / "clicks",
        weak_label_format="cityscapes-labelids",
    )
    weak = dataset[1]["weak_label"]
    assert weak[2, 3] == 0 and weak[5, 5] == 13 and (weak != 255).sum() == 2
    with pytest.raises(DataError, match="valid: .*cityscapes-labelids"):
        build_dataset("cityscapes", root=cityscapes_tree, split="val", weak_label_format="x")


def test_mixed_kinds_without_a_folder_are_simulated(tmp_path):
    from agmm.data.weak_labels.make_labels import make_labels

    full = synthetic()
    make_labels(full, "points", tmp_path / "points", progress=False)
    names = full.names
    dataset = synthetic(
        supervision="points",
        weak_label_dir={"points": tmp_path / "points"},
        supervision_map={names[1]: "tags", names[2]: "blocks"},
    )
    assert dataset.kinds[:3] == ["points", "tags", "blocks"]
    assert (dataset[1]["weak_label"] == 255).all() and dataset[1]["tags"].sum() > 0
    blocks = dataset[2]["weak_label"]
    assert (blocks != 255).any() and torch.equal(
        blocks, synthetic(supervision="blocks")[2]["weak_label"]
    )


def test_box_seed_pngs_without_box_files_train_as_boxes(tmp_path):
    """Seeds written by `agmm seeds` (PNGs only) are usable with supervision=boxes as they are."""
    full = synthetic()
    seeds_dir = tmp_path / "seeds"
    seeds_dir.mkdir()
    for name in full.names:
        seed = np.full((64, 64), 255, np.uint8)
        seed[:8] = 0
        seed[20:30, 20:30] = 2
        Image.fromarray(seed).save(seeds_dir / f"{name}.png")
    dataset = build_dataset(
        "synthetic", root=None, split="train", num_images=6, image_size=(64, 64),
        supervision="boxes", weak_label_dir=seeds_dir,
    )  # fmt: skip
    sample = dataset[0]
    assert (sample["weak_label"][20:30, 20:30] == 2).all() and sample["weak_label"][40, 40] == 255
    assert len(sample["boxes"]) == 0  # the dataset has no boxes of its own: the seeds train
    assert sample["tags"].tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]


def test_box_seed_pngs_keep_the_datasets_own_boxes(voc_tree, tmp_path):
    names = ["2007_000032", "2007_000039"]
    for name in names:
        Image.fromarray(np.full((12, 16), 255, np.uint8)).save(tmp_path / f"{name}.png")
    dataset = build_dataset(
        "voc", root=voc_tree, split="train", supervision="boxes", weak_label_dir=tmp_path
    )
    assert sorted(dataset[0]["boxes"][:, 4].tolist()) == [1.0, 15.0]  # from Annotations/*.xml


def test_boxes_without_seeds_or_box_files_are_named(tmp_path):
    name = synthetic().names[0]
    (tmp_path / f"{name}.json").write_text(json.dumps({"tags": [1]}))
    dataset = synthetic(supervision="boxes", weak_label_dir=tmp_path, skip_bad=True)
    with pytest.raises(
        DataError, match=f"no boxes for image .*{name}.json.*{name}.png of box seeds"
    ):
        dataset[0]
