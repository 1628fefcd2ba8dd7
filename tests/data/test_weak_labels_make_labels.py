"""`agmm make-labels`: files written, protocol recorded and re-created, deterministic per image."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from agmm.data.weak_labels import make_labels as make_labels_module
from agmm.data.weak_labels.make_labels import (
    add_make_labels_arguments,
    format_summary,
    make_labels,
    resolve_protocol,
    run_make_labels,
)
from agmm.data.weak_labels.protocols import PROTOCOLS, describe_protocols
from agmm.data.weak_labels.readers import read_boxes_json, read_label_png, read_tags_json
from agmm.data.weak_labels.simulate import KINDS, image_rng, simulate_weak_label
from agmm.errors import ConfigError, DataError


class MaskDataset:
    """The least a dataset needs: names, classes and ``load_mask(i)``."""

    classes = ["background", "cat", "dog"]
    num_classes = 3
    has_background = True
    palette = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0]], np.uint8)

    def __init__(self, names=("a", "b", "sub/c")):
        self.names = list(names)

    def __len__(self):
        return len(self.names)

    def load_mask(self, index):
        rng = np.random.default_rng(sum(map(ord, self.names[index])))
        mask = np.zeros((24, 32), np.uint8)
        y, x = rng.integers(2, 10, 2)
        mask[y : y + 10, x : x + 12] = 1
        mask[14:22, 20:30] = 2
        mask[0, :] = 255
        return mask


def run(tmp_path, kind, dataset=None, **kwargs):
    return make_labels(dataset or MaskDataset(), kind, tmp_path / kind, progress=False, **kwargs)


def test_points_are_written_as_pngs_with_a_protocol(tmp_path):
    summary = run(tmp_path, "points", seed=7, params={"points_per_class": 2}, protocol="mine")
    out = tmp_path / "points"
    dataset = MaskDataset()
    for index, name in enumerate(dataset.names):
        label = read_label_png(out / f"{name}.png", num_classes=3)
        assert Image.open(out / f"{name}.png").mode == "P"  # palette PNG a user can look at
        expected = simulate_weak_label(
            dataset.load_mask(index),
            "points",
            rng=image_rng(7, name),
            num_classes=3,
            points_per_class=2,
        )["weak_label"]
        np.testing.assert_array_equal(label, expected)
    record = json.loads((out / "protocol.json").read_text())
    assert record["kind"] == "points" and record["seed"] == 7 and record["protocol"] == "mine"
    assert record["params"]["points_per_class"] == 2 and record["dataset"]["classes"][1] == "cat"
    assert summary["num_images"] == 3 and summary["never_labeled"] == []
    rows = {row["class"]: row for row in summary["per_class"]}
    assert rows["cat"]["labeled_pixels"] == 6 and rows["cat"]["labeled_images"] == 3
    assert rows["cat"]["labeled_fraction"] == pytest.approx(6 / 360)
    assert "cat" in format_summary(summary)


def test_output_does_not_depend_on_image_order(tmp_path):
    run(tmp_path / "forward", "scribbles", dataset=MaskDataset(("a", "b", "sub/c")))
    run(tmp_path / "backward", "scribbles", dataset=MaskDataset(("sub/c", "b", "a")))
    for name in ("a", "b", "sub/c"):
        forward = read_label_png(tmp_path / "forward" / "scribbles" / f"{name}.png", num_classes=3)
        backward = read_label_png(
            tmp_path / "backward" / "scribbles" / f"{name}.png", num_classes=3
        )
        np.testing.assert_array_equal(forward, backward)


def test_boxes_and_tags_get_json_sidecars(tmp_path):
    summary = run(tmp_path, "boxes")
    out = tmp_path / "boxes"
    boxes = read_boxes_json(out / "boxes.json")
    assert set(boxes) == {"a", "b", "sub/c"}
    assert sorted(boxes["a"][:, 4].tolist()) == [1, 2]  # background skipped on this dataset
    per_image = json.loads((out / "a.json").read_text())
    assert per_image["boxes"] == boxes["a"].tolist() and per_image["tags"] == [0, 1, 2]
    assert (read_label_png(out / "a.png", num_classes=3) == 255).all()
    assert {row["class"]: row["boxes"] for row in summary["per_class"]} == {
        "background": 0,
        "cat": 3,
        "dog": 3,
    }
    run(tmp_path, "tags")
    tags = read_tags_json(tmp_path / "tags" / "tags.json", num_classes=3)
    np.testing.assert_array_equal(tags["b"], [1, 1, 1])


def test_dataset_given_as_samples_works_too(tmp_path):
    class SampleDataset:
        classes, num_classes = ["x", "y"], 2

        def __len__(self):
            return 2

        def __getitem__(self, index):
            mask = np.zeros((6, 6), np.int64)
            mask[index:, :] = 1
            return {"mask": mask, "name": f"img{index}"}

    make_labels(SampleDataset(), "full", tmp_path, progress=False)
    assert (read_label_png(tmp_path / "img1.png", num_classes=2)[1:] == 1).all()


def test_split_without_masks_is_an_error_naming_the_image(tmp_path):
    class NoMasks(MaskDataset):
        def load_mask(self, index):
            return None

    with pytest.raises(DataError, match="a: no dense mask"):
        run(tmp_path, "points", dataset=NoMasks())


def test_protocol_presets_resolve_and_overrides_win():
    assert resolve_protocol(kind=None, protocol="cityscapes-20-clicks") == (
        "points",
        {"points_per_image": 20, "cover_all_classes": True},
        0,
        "cityscapes-20-clicks",
    )
    kind, params, seed, _ = resolve_protocol(
        kind="blocks", protocol="ade20k-10pct-blocks", overrides=["fraction=0.2"], seed=3
    )
    assert (kind, params["fraction"], params["block_size"], seed) == ("blocks", 0.2, 16, 3)
    with pytest.raises(ConfigError, match="contradicts"):
        resolve_protocol(kind="points", protocol="ade20k-10pct-blocks")
    with pytest.raises(ConfigError, match="valid:"):
        resolve_protocol(kind=None, protocol="voc-100-clicks")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        resolve_protocol(kind="points", protocol=None, overrides=["radius"])
    with pytest.raises(ConfigError, match="--kind"):
        resolve_protocol(kind=None, protocol=None)


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_every_preset_is_a_valid_setting(name):
    preset = PROTOCOLS[name]
    assert preset["kind"] in KINDS and preset["description"]
    mask = MaskDataset().load_mask(0)
    simulate_weak_label(
        mask,
        preset["kind"],
        rng=np.random.default_rng(0),
        num_classes=3,
        instance_mask=(mask == 1).astype(np.int64),
        **preset["params"],
    )
    assert name in describe_protocols()


def test_cli_writes_labels_and_protocol_json_recreates_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(make_labels_module, "_build_dataset", lambda name, **_: MaskDataset())
    parser = add_make_labels_arguments(argparse.ArgumentParser())
    first = tmp_path / "first"
    args = parser.parse_args(
        ["--data", "fake", "--protocol", "voc-scribbles", "--param", "width=1"]
        + ["--seed", "5", "--out", str(first), "--no-progress"]
    )
    assert run_make_labels(args) == 0
    assert "labeled pixels" in capsys.readouterr().out
    record = json.loads((first / "protocol.json").read_text())
    assert record["protocol"] == "voc-scribbles" and record["params"]["width"] == 1
    assert "--param width=1" in record["command"]

    second = tmp_path / "second"
    args = parser.parse_args(
        ["--data", "fake", "--protocol", str(first / "protocol.json"), "--out", str(second)]
        + ["--no-progress"]
    )
    assert run_make_labels(args) == 0
    assert json.loads((second / "protocol.json").read_text())["seed"] == 5
    for name in MaskDataset().names:
        np.testing.assert_array_equal(
            read_label_png(first / f"{name}.png", num_classes=3),
            read_label_png(second / f"{name}.png", num_classes=3),
        )

    assert run_make_labels(parser.parse_args(["--list-protocols"])) == 0
    assert "ade20k-10pct-blocks" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="--data and --out"):
        run_make_labels(parser.parse_args(["--kind", "points"]))


def test_real_dataset_reads_back_what_make_labels_wrote(tmp_path):
    """Against agmm.data's CamVid loader: files on disk == the dataset's on-the-fly simulation."""
    data = pytest.importorskip("agmm.data")
    root = tmp_path / "camvid"
    rng = np.random.default_rng(0)
    for index in range(2):
        for folder in ("images", "labels"):
            (root / folder / "train").mkdir(parents=True, exist_ok=True)
        image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
        label = np.kron(rng.integers(0, 4, (5, 6)), np.ones((4, 4), np.int64)).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / "train" / f"0001TP_00{index}.png")
        Image.fromarray(label).save(root / "labels" / "train" / f"0001TP_00{index}.png")
    dataset = data.build_dataset("camvid", root=root, split="train")
    params = {"points_per_class": 2, "radius": 1}
    make_labels(dataset, "points", tmp_path / "out", seed=4, params=params, progress=False)
    from_files = data.build_dataset(
        "camvid", root=root, split="train", supervision="points", weak_label_dir=tmp_path / "out"
    )
    simulated = data.build_dataset(
        "camvid", root=root, split="train", supervision="points", weak_label_args=params, seed=4
    )
    for index in range(2):
        np.testing.assert_array_equal(
            from_files[index]["weak_label"].numpy(), simulated[index]["weak_label"].numpy()
        )


def test_a_failure_half_way_leaves_the_output_folder_as_it_was(tmp_path):
    class BrokenThirdMask(MaskDataset):
        def load_mask(self, index):
            if index == 2:
                raise DataError("labels/sub/c.png: cannot read label image")
            return super().load_mask(index)

    out = tmp_path / "points"
    with pytest.raises(DataError, match="sub/c.png"):
        make_labels(BrokenThirdMask(), "points", out, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no labels, no staging folder
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError):
        make_labels(BrokenThirdMask(), "points", out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    run(tmp_path, "points")  # a complete run fills the folder, keeping other files
    assert {"a.png", "protocol.json", "notes.txt"} <= {p.name for p in out.iterdir()}
