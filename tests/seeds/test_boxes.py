"""Box seeds: GrabCut finds the object, seeds stay in their box, overlap and background rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agmm.errors import LabelError
from agmm.seeds import grabcut_seeds
from tests.seeds.scenes import synthetic_scene

IGNORE = 255


@pytest.mark.parametrize(
    "options", [{}, {"context": None}, {"max_pixels": 1500}], ids=["local", "whole", "downscaled"]
)
def test_grabcut_finds_most_of_the_object_and_stays_in_its_box(options):
    image, obj, boxes = synthetic_scene()
    seeds = grabcut_seeds(image, boxes, has_background=True, num_classes=2, **options)
    inside = np.zeros_like(obj)
    inside[14:50, 10:46] = True
    assert seeds.dtype == np.uint8 and seeds.shape == (64, 64)
    assert (seeds[~inside] == 0).all()  # outside every box: background
    assert (seeds[inside] != 0).all()  # inside a box: never background
    assert (seeds[obj] == 1).mean() > 0.9  # most of the object is found
    leak = 0.2 if "max_pixels" in options else 0.1  # downscaling blurs the outline by ~1 pixel
    assert (seeds[inside & ~obj] == 1).mean() < leak  # the box's background is left out
    assert (seeds[inside & ~obj] == IGNORE).mean() > 1 - leak


def test_without_background_class_outside_boxes_is_ignored():
    image, obj, boxes = synthetic_scene()
    boxes[:, 4] = 0  # class 0 is a real class when the dataset has no background
    seeds = grabcut_seeds(image, boxes, has_background=False, num_classes=2)
    inside = np.zeros_like(obj)
    inside[14:50, 10:46] = True
    assert (seeds[~inside] == IGNORE).all()
    assert (seeds[obj] == 0).mean() > 0.9


@pytest.mark.parametrize("method", ["grabcut", "shrink"])
def test_overlapping_boxes_smaller_box_wins(method):
    image, _, _ = synthetic_scene()
    big = [4, 4, 60, 60, 1]
    small = [20, 20, 36, 36, 2]
    for order in ([big, small], [small, big]):
        seeds = grabcut_seeds(
            image, np.array(order, np.float32), has_background=True, num_classes=3, method=method
        )
        assert not (seeds[20:36, 20:36] == 1).any()  # the larger box never seeds inside the smaller
        assert set(np.unique(seeds[20:36, 20:36])) <= {2, IGNORE}


def test_shrink_seeds_the_interior_and_ignores_the_rim():
    image = np.zeros((40, 40, 3), np.uint8)
    seeds = grabcut_seeds(
        image,
        np.array([[0, 0, 20, 40, 1]], np.float32),
        has_background=True,
        num_classes=2,
        method="shrink",
        shrink_margin=0.25,
    )
    assert (seeds[10:30, 5:15] == 1).all()
    assert (seeds[:10, :20] == IGNORE).all() and (seeds[:, :5] == IGNORE).all()
    assert (seeds[:, 20:] == 0).all()


def test_box_covering_the_whole_image_falls_back_to_shrink():
    image, _, _ = synthetic_scene()
    seeds = grabcut_seeds(
        image, np.array([[0, 0, 64, 64, 1]], np.float32), has_background=True, num_classes=2
    )
    assert (seeds[20:44, 20:44] == 1).all() and (seeds[:5] == IGNORE).all()


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ([0, 0, 10, 10, 7], "class 7 .* 1..2"),
        ([0, 0, 10, 10, 0], "0 is the background"),
        ([-20, 0, 10, 10, 1], "outside the 64x64 image"),
        ([0, 0, 10, 90, 1], "outside"),
        ([5, 5, 5, 10, 1], "zero area"),
    ],
)
def test_bad_boxes_are_label_errors_naming_the_file(box, message):
    image, _, _ = synthetic_scene()
    with pytest.raises(LabelError, match=f"boxes/img7.json: .*{message}"):
        grabcut_seeds(
            image,
            np.array([box], np.float32),
            has_background=True,
            num_classes=3,
            source="boxes/img7.json",
        )


def test_no_boxes_gives_background_or_ignore_only():
    image = np.zeros((8, 8, 3), np.uint8)
    empty = np.zeros((0, 5), np.float32)
    assert (grabcut_seeds(image, empty, has_background=True, num_classes=3) == 0).all()
    assert (grabcut_seeds(image, empty, has_background=False, num_classes=3) == IGNORE).all()


@settings(max_examples=25, deadline=None)
@given(
    data=st.data(),
    method=st.sampled_from(["grabcut", "shrink"]),
    background=st.booleans(),
)
def test_every_seed_lies_inside_a_box_of_its_class(data, method, background):
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    image = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    count = data.draw(st.integers(1, 3))
    boxes = []
    for _ in range(count):
        x0, y0 = data.draw(st.integers(0, 20)), data.draw(st.integers(0, 20))
        x1, y1 = data.draw(st.integers(x0 + 1, 24)), data.draw(st.integers(y0 + 1, 24))
        boxes.append([x0, y0, x1, y1, data.draw(st.integers(1, 3))])
    boxes = np.array(boxes, np.float32)
    seeds = grabcut_seeds(image, boxes, has_background=background, num_classes=4, method=method)
    for class_id in set(np.unique(seeds)) - {0, IGNORE}:
        allowed = np.zeros((24, 24), bool)
        for x0, y0, x1, y1, c in boxes.astype(int):
            if c == class_id:
                allowed[y0:y1, x0:x1] = True
        assert allowed[seeds == class_id].all()
    if background:
        covered = np.zeros((24, 24), bool)
        for x0, y0, x1, y1, _ in boxes.astype(int):
            covered[y0:y1, x0:x1] = True
        assert (seeds[~covered] == 0).all() and (seeds[covered] != 0).all()
