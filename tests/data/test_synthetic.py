"""The built-in textured-shapes dataset: deterministic, fast, and colour alone gives nothing away."""

from __future__ import annotations

import time

import numpy as np
import torch

from agmm.data import SyntheticShapes
from agmm.data.synthetic import class_signature, generate_image


def raw_images(dataset: SyntheticShapes, count: int) -> list[dict]:
    return [dataset.read_raw(i) for i in range(count)]


def test_same_seed_same_images_other_seed_other_images():
    a = SyntheticShapes(num_images=3, seed=0)
    b = SyntheticShapes(num_images=3, seed=0)
    c = SyntheticShapes(num_images=3, seed=1)
    assert torch.equal(a[2]["image"], b[2]["image"]) and torch.equal(a[2]["mask"], b[2]["mask"])
    assert not torch.equal(a[2]["image"], c[2]["image"])
    val = SyntheticShapes(num_images=3, seed=0, split="val")
    assert not torch.equal(a[0]["image"], val[0]["image"])  # splits hold different images


def test_generating_an_image_takes_less_than_10_ms():
    rng = np.random.default_rng(0)
    timings = []
    for _ in range(15):  # CPU time of this process: other jobs on a shared machine do not count
        start = time.process_time()
        generate_image(rng, (96, 128), 5)
        timings.append(time.process_time() - start)
    assert np.median(timings) < 0.010


def test_masks_and_instances_agree():
    dataset = SyntheticShapes(num_images=8, num_classes=5, image_size=(48, 64))
    seen = set()
    for raw in raw_images(dataset, 8):
        image, mask, instances = raw["image"], raw["mask"], raw["instance_mask"]
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        assert mask.shape == instances.shape == (48, 64)
        assert np.array_equal(instances > 0, mask > 0)
        for instance in np.unique(instances[instances > 0]):
            assert len(np.unique(mask[instances == instance])) == 1  # one class per instance
        seen |= set(np.unique(mask).tolist())
    assert seen == {0, 1, 2, 3, 4}


def test_every_object_class_has_its_own_shape_and_texture_signature():
    signatures = [class_signature(k) for k in range(1, 40)]
    assert len(set(signatures)) == len(signatures)
    dataset = SyntheticShapes(num_images=1, num_classes=14)
    assert dataset.classes[0] == "background" and len(set(dataset.classes)) == 14


def test_colour_alone_does_not_determine_the_class():
    """The best per-pixel colour classifier (a lookup table of the majority class per colour
    bin, fit on training images) is barely better than chance on held-out images."""
    num_classes = 5
    train = raw_images(SyntheticShapes(num_images=40, num_classes=num_classes, seed=0), 40)
    test = raw_images(SyntheticShapes(num_images=20, num_classes=num_classes, seed=1), 20)

    def bins_and_labels(images):
        pixels = np.concatenate([r["image"].reshape(-1, 3) for r in images]) // 32  # 8 levels
        labels = np.concatenate([r["mask"].reshape(-1) for r in images]).astype(np.int64)
        return pixels[:, 0] * 64 + pixels[:, 1] * 8 + pixels[:, 2], labels

    train_bins, train_labels = bins_and_labels(train)
    counts = np.zeros((512, num_classes))
    np.add.at(counts, (train_bins, train_labels), 1)
    # Balanced: weigh classes equally, or the classifier would just answer "background".
    counts /= counts.sum(0, keepdims=True)
    lookup = counts.argmax(1)
    test_bins, test_labels = bins_and_labels(test)
    predicted = lookup[test_bins]
    recall = [(predicted[test_labels == k] == k).mean() for k in range(num_classes)]
    balanced_accuracy = float(np.mean(recall))
    assert balanced_accuracy < 0.35  # chance is 0.2; a perfect classifier would reach 1.0
