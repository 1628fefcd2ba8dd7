"""compute_box_seeds: cache keyed by image bytes + boxes + parameters, corrupt entries recomputed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from agmm.errors import LabelError
from agmm.seeds import compute_box_seeds, grabcut_seeds
from tests.seeds.scenes import synthetic_scene


class BoxDataset:
    """The part of an agmm dataset that box seeds read: samples with image, boxes, mask, names."""

    num_classes = 3
    has_background = True
    classes = ["background", "red", "other"]

    def __init__(self, root: Path, count: int = 3) -> None:
        self.items = []
        for index in range(count):
            image, obj, boxes = synthetic_scene(seed=index)
            path = root / f"img{index}.png"
            Image.fromarray(image).save(path)
            mask = np.where(obj, 1, 0)
            self.items.append({"path": path, "boxes": boxes, "mask": mask})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        return {
            "image": torch.zeros(3, 64, 64),
            "boxes": torch.as_tensor(item["boxes"]),
            "mask": torch.as_tensor(item["mask"]),
            "tags": torch.tensor([1.0, 1.0, 0.0]),
            "name": f"img{index}",
            "image_path": str(item["path"]),
        }


def test_seeds_are_cached_and_reused(tmp_path):
    dataset = BoxDataset(tmp_path)
    first = compute_box_seeds(dataset, tmp_path / "cache", progress=False)
    assert (first.computed, first.reused) == (3, 0)
    second = compute_box_seeds(dataset, tmp_path / "cache", progress=False)
    assert (second.computed, second.reused) == (0, 3)
    assert first.paths == second.paths
    seeds = np.asarray(Image.open(first.paths["img0"]))
    image = np.asarray(Image.open(dataset.items[0]["path"]))
    expected = grabcut_seeds(image, dataset.items[0]["boxes"], has_background=True, num_classes=3)
    assert np.array_equal(seeds, expected)
    assert first.quality.precision_miou > 0.8  # GrabCut seeds of the red rectangle are right


def test_a_changed_box_recomputes_that_image_only(tmp_path):
    dataset = BoxDataset(tmp_path)
    compute_box_seeds(dataset, tmp_path / "cache", progress=False)
    dataset.items[1]["boxes"] = dataset.items[1]["boxes"] + np.array([2, 0, 2, 0, 0], np.float32)
    run = compute_box_seeds(dataset, tmp_path / "cache", progress=False)
    assert (run.computed, run.reused) == (1, 2)
    assert len(list((tmp_path / "cache").glob("img1-*.png"))) == 1  # the stale entry is gone


def test_changed_parameters_recompute(tmp_path):
    dataset = BoxDataset(tmp_path, count=1)
    compute_box_seeds(dataset, tmp_path / "cache", progress=False)
    run = compute_box_seeds(dataset, tmp_path / "cache", method="shrink", progress=False)
    assert run.computed == 1


@pytest.mark.parametrize("damage", ["garbage", "wrong_size", "bad_values"])
def test_a_corrupt_cache_entry_is_recomputed_not_trusted(tmp_path, damage):
    dataset = BoxDataset(tmp_path, count=1)
    path = compute_box_seeds(dataset, tmp_path / "cache", progress=False).paths["img0"]
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "wrong_size":
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(path)
    else:
        Image.fromarray(np.full((64, 64), 9, np.uint8)).save(path)
    run = compute_box_seeds(dataset, tmp_path / "cache", progress=False)
    assert (run.computed, run.recomputed_corrupt) == (1, 1)
    assert path.read_bytes() == good


def test_parallel_workers_and_out_dir_give_the_same_seeds(tmp_path):
    dataset = BoxDataset(tmp_path, count=4)
    serial = compute_box_seeds(dataset, tmp_path / "cache1", progress=False)
    parallel = compute_box_seeds(
        dataset, tmp_path / "cache2", out_dir=tmp_path / "out", workers=2, progress=False
    )
    assert parallel.computed == 4
    for name, path in parallel.paths.items():
        assert path == tmp_path / "out" / f"{name}.png"
        assert path.read_bytes() == serial.paths[name].read_bytes()


def test_a_bad_box_names_the_image(tmp_path):
    dataset = BoxDataset(tmp_path, count=1)
    dataset.items[0]["boxes"] = np.array([[0, 0, 10, 10, 5]], np.float32)
    with pytest.raises(LabelError, match="img0.png.*class 5"):
        compute_box_seeds(dataset, tmp_path / "cache", progress=False)


def test_generated_images_without_files_are_seeded_and_cached(tmp_path):
    from agmm.data import build_dataset

    dataset = build_dataset(
        "synthetic",
        root=None,
        split="train",
        supervision="boxes",
        num_images=3,
        image_size=(48, 48),
        num_classes=3,
    )
    run = compute_box_seeds(dataset, tmp_path / "cache", progress=False)
    assert run.computed == 3 and run.quality.precision_miou > 0.8
    assert compute_box_seeds(dataset, tmp_path / "cache", progress=False).reused == 3


def test_a_runs_box_seed_folder_has_a_seed_png_and_a_box_sidecar_per_image(tmp_path):
    """What ``agmm train`` trains on when boxes come without seed files."""
    import json

    from agmm.config import load_config
    from agmm.data import build_dataset
    from agmm.seeds.box_cache import write_box_seed_folder

    cfg = load_config(
        None,
        [
            "data.name=synthetic",
            "data.supervision=boxes",
            "data.weak_label_args={}",
            "data.dataset_args={num_images: 3, image_size: [32, 32], num_classes: 3}",
            "data.num_workers=0",
            "data.box_seed_args={iterations: 1}",
            f"data.box_seed_cache={tmp_path / 'cache'}",
        ],
    )
    write_box_seed_folder(cfg, tmp_path / "seeds")
    dataset = build_dataset(
        "synthetic",
        root=cfg.data.root,
        split=cfg.data.train_split,
        supervision="boxes",
        weak_label_args={},
        seed=cfg.seed,
        **cfg.data.dataset_args,
    )
    for index in range(len(dataset)):
        sample = dataset[index]
        seeds = np.asarray(Image.open(tmp_path / "seeds" / f"{sample['name']}.png"))
        assert seeds.shape == tuple(sample["mask"].shape)
        sidecar = json.loads((tmp_path / "seeds" / f"{sample['name']}.json").read_text())
        np.testing.assert_allclose(sidecar["boxes"], np.asarray(sample["boxes"]).reshape(-1, 5))
    assert len(list((tmp_path / "cache").glob("*.png"))) == len(dataset)
