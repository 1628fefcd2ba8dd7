"""Joint augmentation keeps image, weak label, mask and boxes aligned; padding is 255 for labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agmm.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    TrainTransform,
    denormalize_image,
    hflip_sample,
    resize_label,
    to_tensor_sample,
)

# Each class has its own colour, so the image tells which label a pixel should have.
COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]], np.uint8)


def coded_sample(rng: np.random.Generator, hw=(40, 56)) -> dict:
    """Image whose pixel colour encodes its mask class; blocky regions; sparse weak label; boxes."""
    small = rng.integers(0, 4, size=(hw[0] // 8, hw[1] // 8))
    mask = np.kron(small, np.ones((8, 8), np.int64)).astype(np.uint8)
    weak = np.full(hw, 255, np.uint8)
    ys, xs = rng.integers(0, hw[0], 30), rng.integers(0, hw[1], 30)
    weak[ys, xs] = mask[ys, xs]
    boxes = np.array([[8, 8, 24, 16, 1], [40, 0, 56, 40, 2]], np.float32)
    return {"image": COLOURS[mask], "weak_label": weak, "mask": mask, "boxes": boxes}


def colour_class(image: np.ndarray) -> np.ndarray:
    """(H, W) index of the nearest class colour of each pixel."""
    distance = ((image[:, :, None, :].astype(int) - COLOURS[None, None].astype(int)) ** 2).sum(-1)
    return distance.argmin(-1)


@pytest.mark.parametrize("seed", range(6))
def test_crop_and_flip_keep_every_label_pixel_on_its_image_pixel(seed):
    sample = coded_sample(np.random.default_rng(seed))
    transform = TrainTransform(crop_size=(32, 48), scale_range=(1.0, 1.0), color_jitter=0.0)
    out = transform(sample, rng=np.random.default_rng(seed))
    assert out["image"].shape == (32, 48, 3) and out["mask"].shape == (32, 48)
    for label in (out["mask"], out["weak_label"]):
        labeled = label != 255
        assert np.array_equal(colour_class(out["image"])[labeled], label[labeled])


@pytest.mark.parametrize("seed", range(6))
def test_scaling_keeps_labels_and_image_aligned(seed):
    sample = coded_sample(np.random.default_rng(seed))
    transform = TrainTransform(crop_size=(32, 48), scale_range=(0.5, 2.0), color_jitter=0.0)
    out = transform(sample, rng=np.random.default_rng(100 + seed))
    labeled = out["mask"] != 255
    agree = colour_class(out["image"])[labeled] == out["mask"][labeled]
    assert agree.mean() > 0.97  # only bilinear blending at region borders may disagree


def test_crop_padding_is_255_for_labels_and_0_for_the_image():
    sample = coded_sample(np.random.default_rng(0), hw=(16, 16))
    out = TrainTransform(crop_size=40, scale_range=(1.0, 1.0), hflip=False, color_jitter=0.0)(
        sample, rng=np.random.default_rng(0)
    )
    assert out["image"].shape == (40, 40, 3)
    assert (out["mask"][16:] == 255).all() and (out["mask"][:, 16:] == 255).all()
    assert (out["weak_label"][16:] == 255).all()
    assert (out["image"][16:] == 0).all() and (out["image"][:, 16:] == 0).all()
    assert np.array_equal(out["mask"][:16, :16], sample["mask"])


def test_boxes_move_with_a_flip():
    sample = coded_sample(np.random.default_rng(0))
    out = hflip_sample(sample)
    assert np.array_equal(out["mask"], sample["mask"][:, ::-1])
    assert np.array_equal(out["weak_label"], sample["weak_label"][:, ::-1])
    assert out["boxes"].tolist() == [[32, 8, 48, 16, 1], [0, 0, 16, 40, 2]]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_boxes_stay_inside_the_crop_and_on_their_object(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((40, 56), np.uint8)
    mask[10:30, 20:50] = 1
    sample = {
        "image": COLOURS[mask],
        "weak_label": mask.copy(),
        "mask": mask,
        "boxes": np.array([[20, 10, 50, 30, 1]], np.float32),
    }
    out = TrainTransform(crop_size=(24, 24), scale_range=(0.5, 1.5), color_jitter=0.0)(
        sample, rng=rng
    )
    boxes = out["boxes"]
    assert ((boxes[:, [0, 2]] >= 0) & (boxes[:, [0, 2]] <= 24)).all()
    assert ((boxes[:, [1, 3]] >= 0) & (boxes[:, [1, 3]] <= 24)).all()
    inside = out["mask"] == 1
    if len(boxes):
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        x0, y0, x1, y1 = boxes[0, :4]
        ys, xs = np.nonzero(inside)
        if len(ys):  # the box is tight around the object's visible part (within a pixel)
            assert abs(xs.min() - x0) <= 1 and abs(xs.max() + 1 - x1) <= 1
            assert abs(ys.min() - y0) <= 1 and abs(ys.max() + 1 - y1) <= 1


def test_a_single_clicked_point_survives_downscaling():
    weak = np.full((64, 64), 255, np.uint8)
    weak[33, 17] = 3
    out = resize_label(weak, (16, 16), keep_sparse=True)
    assert (out != 255).sum() == 1 and out[8, 4] == 3
    sample = {"image": np.zeros((64, 64, 3), np.uint8), "weak_label": weak, "mask": weak}
    shrunk = TrainTransform(crop_size=None, scale_range=(0.25, 0.25), color_jitter=0.0)(
        sample, rng=np.random.default_rng(0)
    )
    assert (shrunk["weak_label"] == 3).sum() == 1


def test_transform_is_deterministic_given_a_generator():
    sample = coded_sample(np.random.default_rng(0))
    transform = TrainTransform(crop_size=24)
    a = transform(sample, rng=np.random.default_rng(5))
    b = transform(sample, rng=np.random.default_rng(5))
    assert all(np.array_equal(a[k], b[k]) for k in ("image", "weak_label", "mask", "boxes"))
    e = transform(sample, rng=torch.Generator().manual_seed(3))
    f = transform(sample, rng=torch.Generator().manual_seed(3))
    assert np.array_equal(e["image"], f["image"]) and np.array_equal(e["boxes"], f["boxes"])
    torch.manual_seed(1)
    c = transform(sample)
    torch.manual_seed(1)
    d = transform(sample)
    assert np.array_equal(c["image"], d["image"])


def test_color_jitter_changes_only_the_image():
    sample = coded_sample(np.random.default_rng(0))
    out = TrainTransform(crop_size=None, scale_range=(1, 1), hflip=False, color_jitter=0.4)(
        sample, rng=np.random.default_rng(0)
    )
    assert np.array_equal(out["mask"], sample["mask"]) and out["image"].dtype == np.uint8
    assert not np.array_equal(out["image"], sample["image"])


def test_eval_transform_resizes_shorter_side_or_to_a_size():
    sample = coded_sample(np.random.default_rng(0))
    assert EvalTransform()(sample)["image"].shape == (40, 56, 3)
    out = EvalTransform(resize=20)(sample)
    assert out["image"].shape == (20, 28, 3) and out["mask"].shape == (20, 28)
    assert out["boxes"].tolist() == [[4, 4, 12, 8, 1], [20, 0, 28, 20, 2]]
    assert EvalTransform(resize=(10, 12))(sample)["weak_label"].shape == (10, 12)


def test_to_tensor_normalises_with_imagenet_statistics():
    image = np.full((2, 3, 3), 255, np.uint8)
    out = to_tensor_sample({"image": image, "weak_label": None, "mask": np.zeros((2, 3), np.uint8)})
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out["image"][:, 0, 0], expected)
    assert out["weak_label"].dtype == torch.int64 and (out["weak_label"] == 255).all()
    assert out["boxes"].shape == (0, 5)
    assert np.array_equal(denormalize_image(out["image"]), image)
