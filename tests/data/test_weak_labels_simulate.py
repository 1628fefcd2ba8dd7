"""Weak-label simulators: each protocol keeps its promise on tiny masks with known regions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.morphology import skeletonize

from agmm.data.weak_labels.simulate import (
    DEFAULT_PARAMS,
    KINDS,
    image_rng,
    resolve_params,
    simulate_weak_label,
)
from agmm.errors import ConfigError, LabelError

NUM_CLASSES = 6


def scene() -> tuple[np.ndarray, np.ndarray]:
    """A 48x64 mask (background 0, objects 1-4, an ignore band) and its instance mask."""
    mask = np.zeros((48, 64), np.uint8)
    instances = np.zeros((48, 64), np.int32)
    mask[4:20, 4:24] = 1  # two instances of class 1
    instances[4:20, 4:24] = 1
    mask[26:44, 6:18] = 1
    instances[26:44, 6:18] = 2
    cv2.ellipse(mask, (44, 14), (14, 8), 0, 0, 360, 2, -1)  # one instance of class 2
    instances[mask == 2] = 3
    mask[28:46, 30:60] = 3  # "stuff" class 3: no instance
    mask[30:32, 36:38] = 4  # a 4-pixel speck of class 4 inside class 3
    mask[:, 62:] = 255  # ignore band
    instances[:, 62:] = 0
    return mask, instances


SCENE_INSTANCES = object()


def simulate(kind, seed=0, mask=None, instances=SCENE_INSTANCES, **params):
    """Simulate on ``mask`` (default: the scene, with its instances unless ``instances`` given)."""
    default_instances = None
    if mask is None:
        mask, default_instances = scene()
    if instances is SCENE_INSTANCES:
        instances = default_instances
    return simulate_weak_label(
        mask,
        kind,
        rng=np.random.default_rng(seed),
        num_classes=NUM_CLASSES,
        instance_mask=instances,
        **params,
    )


def labeled_per_class(weak: np.ndarray) -> np.ndarray:
    return np.bincount(weak[weak != 255].astype(np.int64), minlength=NUM_CLASSES)


def present(mask: np.ndarray) -> set[int]:
    return set(np.unique(mask[mask != 255]).tolist())


# ---------------------------------------------------------------------------------- all kinds


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_gives_the_same_labels(kind):
    first, second = simulate(kind, seed=3), simulate(kind, seed=3)
    for key in ("weak_label", "boxes", "tags"):
        np.testing.assert_array_equal(first[key], second[key])


@pytest.mark.parametrize("kind", ["points", "scribbles", "blocks"])
def test_other_seed_gives_other_labels(kind):
    assert not np.array_equal(
        simulate(kind, seed=0)["weak_label"], simulate(kind, seed=1)["weak_label"]
    )


@pytest.mark.parametrize(
    "kind, params",
    [
        ("points", {"points_per_class": 5, "radius": 3}),
        ("points", {"points_per_image": 30}),
        ("scribbles", {"width": 3, "min_region_pixels": 1}),
        ("blocks", {"block_size": 8, "fraction": 0.5}),
        ("full", {}),
    ],
)
def test_labels_match_the_mask_and_never_touch_ignore(kind, params):
    mask, _ = scene()
    out = simulate(kind, **params)
    weak = out["weak_label"]
    assert weak.dtype == np.uint8 and weak.shape == mask.shape
    labeled = weak != 255
    assert labeled.any()
    np.testing.assert_array_equal(weak[labeled], mask[labeled])
    assert not labeled[mask == 255].any()
    assert out["boxes"].shape == (0, 5) and out["tags"].dtype == np.float32
    np.testing.assert_array_equal(np.flatnonzero(out["tags"]), np.unique(weak[labeled]))


def test_image_rng_depends_on_seed_and_name_only():
    a = image_rng(0, "img_1").random(4)
    np.testing.assert_array_equal(a, image_rng(0, "img_1").random(4))
    assert not np.array_equal(a, image_rng(0, "img_2").random(4))
    assert not np.array_equal(a, image_rng(1, "img_1").random(4))


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="points_per_class"):
        simulate("points", clicks=3)
    with pytest.raises(ConfigError, match="valid kinds"):
        simulate("polygons")
    with pytest.raises(ConfigError, match="only one of"):
        resolve_params("points", {"points_per_class": 1, "points_per_image": 20})
    with pytest.raises(ConfigError, match="fraction"):
        resolve_params("blocks", {"fraction": 1.5})


def test_mask_value_outside_the_classes_is_a_label_error():
    mask, _ = scene()
    mask[0, 0] = 9
    with pytest.raises(LabelError, match=r"\[9\]"):
        simulate("points", mask=mask)


def test_other_ignore_index_is_never_labeled():
    mask, _ = scene()
    mask[mask == 255] = 5  # ignore_index = 5 here
    out = simulate_weak_label(
        mask, "full", rng=np.random.default_rng(0), num_classes=5, ignore_index=5
    )
    assert (out["weak_label"][mask == 5] == 255).all()


# -------------------------------------------------------------------------------------- points


def test_points_per_class_clicks_each_present_class_n_times():
    mask, _ = scene()
    counts = labeled_per_class(simulate("points", points_per_class=3)["weak_label"])
    for class_id in range(NUM_CLASSES):
        expected = min(3, int((mask == class_id).sum()))
        assert counts[class_id] == expected, class_id


def test_points_per_instance_clicks_every_instance_and_stuff_class():
    mask, instances = scene()
    weak = simulate("points", points_per_instance=2)["weak_label"]
    for instance_id in (1, 2, 3):
        assert ((weak != 255) & (instances == instance_id)).sum() == 2
    stuff = instances == 0
    for class_id in (0, 3, 4):  # no instance: two clicks per class
        assert ((weak == class_id) & stuff).sum() == 2
    with pytest.raises(ConfigError, match="instance mask"):
        simulate_weak_label(
            mask,
            "points",
            rng=np.random.default_rng(0),
            num_classes=NUM_CLASSES,
            points_per_instance=1,
        )


@pytest.mark.parametrize("clicks", [3, 20, 100])
def test_points_per_image_gives_n_clicks_covering_every_class(clicks):
    mask, _ = scene()
    weak = simulate("points", points_per_image=clicks)["weak_label"]
    assert (weak != 255).sum() == max(clicks, len(present(mask)))
    assert set(np.unique(weak[weak != 255]).tolist()) == present(mask)


def test_points_per_image_without_cover_follows_class_area():
    mask, _ = scene()
    weak = simulate("points", points_per_image=200, cover_all_classes=False)["weak_label"]
    counts = labeled_per_class(weak)
    assert counts.sum() == 200
    assert counts[0] > counts[2]  # background covers far more pixels than the ellipse


def test_point_radius_draws_a_disk_clipped_to_its_class():
    mask, _ = scene()
    dots = simulate("points", points_per_class=1)["weak_label"]
    disks = simulate("points", points_per_class=1, radius=2)["weak_label"]
    assert ((dots != 255) <= (disks != 255)).all()  # same clicks, grown
    rows, cols = np.mgrid[: mask.shape[0], : mask.shape[1]]
    for class_id in present(mask):
        (y,), (x,) = np.nonzero(dots == class_id)
        disk = (rows - y) ** 2 + (cols - x) ** 2 <= 4
        np.testing.assert_array_equal(disks == class_id, disk & (mask == class_id))


def test_boundary_margin_keeps_clicks_away_from_edges():
    mask, _ = scene()
    weak = simulate("points", points_per_class=5, boundary_margin=3)["weak_label"]
    edges = np.zeros(mask.shape, bool)
    edges[1:] |= mask[1:] != mask[:-1]
    edges[:-1] |= mask[1:] != mask[:-1]
    edges[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edges[:, :-1] |= mask[:, 1:] != mask[:, :-1]
    distance = cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, 5)
    clicked = (weak != 255) & (mask != 4)  # the 2x2 speck has no pixel 3 px from an edge
    assert (distance[clicked] >= 3).all()
    assert (weak == 4).sum() == 4  # ... so it falls back to any of its pixels


@st.composite
def random_masks(draw):
    height, width = draw(st.integers(4, 24)), draw(st.integers(4, 24))
    mask = np.full((height, width), draw(st.integers(0, 4)), np.uint8)
    for _ in range(draw(st.integers(0, 5))):
        y0, x0 = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
        y1, x1 = draw(st.integers(y0 + 1, height)), draw(st.integers(x0 + 1, width))
        mask[y0:y1, x0:x1] = draw(st.sampled_from([0, 1, 2, 3, 4, 255]))
    return mask


@settings(max_examples=40, deadline=None)
@given(
    mask=random_masks(),
    seed=st.integers(0, 2**32 - 1),
    params=st.sampled_from(
        [
            {"points_per_class": 1},
            {"points_per_class": 2, "radius": 1},
            {"points_per_image": 5},
            {"points_per_class": 1, "boundary_margin": 2},
        ]
    ),
)
def test_points_always_land_inside_their_class_and_cover_every_class(mask, seed, params):
    weak = simulate("points", seed=seed, mask=mask, **params)["weak_label"]
    labeled = weak != 255
    np.testing.assert_array_equal(weak[labeled], mask[labeled])
    assert set(np.unique(weak[labeled]).tolist()) == present(mask)


@settings(max_examples=25, deadline=None)
@given(mask=random_masks(), seed=st.integers(0, 2**32 - 1))
def test_scribbles_stay_inside_their_class_and_cover_every_class(mask, seed):
    weak = simulate("scribbles", seed=seed, mask=mask, min_region_pixels=1, width=2)["weak_label"]
    labeled = weak != 255
    np.testing.assert_array_equal(weak[labeled], mask[labeled])
    assert set(np.unique(weak[labeled]).tolist()) == present(mask)


# ----------------------------------------------------------------------------------- scribbles


def components(mask):
    """(class, (H, W) bool) for every 8-connected region of every class."""
    for class_id in present(mask):
        count, label_map = cv2.connectedComponents(
            (mask == class_id).astype(np.uint8), connectivity=8
        )
        for index in range(1, count):
            yield class_id, label_map == index


@pytest.mark.parametrize("fraction", [0.3, 0.5, 1.0])
def test_scribble_length_is_the_requested_fraction_of_the_skeleton(fraction):
    mask, _ = scene()
    weak = simulate("scribbles", length_fraction=fraction, min_region_pixels=1)["weak_label"]
    for class_id, region in components(mask):
        skeleton = skeletonize(region)
        stroke = (weak == class_id) & region
        target = max(1, fraction * skeleton.sum())
        assert abs(stroke.sum() - target) <= max(1, 0.1 * target), class_id
        assert (stroke <= skeleton).all()  # width 1: the stroke is a piece of the skeleton
        pieces, _ = cv2.connectedComponents(stroke.astype(np.uint8), connectivity=8)
        assert pieces - 1 == 1  # one connected stroke per region


def test_wide_scribbles_stay_inside_their_region():
    mask, _ = scene()
    thin = simulate("scribbles", width=1)["weak_label"]
    wide = simulate("scribbles", width=5)["weak_label"]
    assert (wide != 255).sum() > 2 * (thin != 255).sum()
    assert ((thin != 255) <= (wide != 255)).all()
    np.testing.assert_array_equal(wide[wide != 255], mask[wide != 255])


def test_scribbles_skip_specks_and_cover_every_larger_class():
    mask, _ = scene()
    weak = simulate("scribbles", min_region_pixels=16)["weak_label"]
    assert set(np.unique(weak[weak != 255]).tolist()) == {0, 1, 2, 3}  # the 4-px speck (4) skipped
    weak = simulate("scribbles", min_region_pixels=1)["weak_label"]
    assert (weak == 4).any()


def test_one_pixel_wide_region_scribbles_along_itself():
    mask = np.zeros((9, 30), np.uint8)
    mask[4, 2:28] = 1  # a 26-px line
    weak = simulate("scribbles", mask=mask, length_fraction=0.5, min_region_pixels=1)["weak_label"]
    assert (weak == 1).sum() == 13


# -------------------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_block_fraction_within_two_percent(fraction):
    mask = np.random.default_rng(0).integers(0, 3, (200, 240)).astype(np.uint8)
    weak = simulate("blocks", mask=mask, block_size=8, fraction=fraction)["weak_label"]
    labeled = (weak != 255).reshape(25, 8, 30, 8)
    kept = labeled.any(axis=(1, 3))
    assert abs(kept.mean() - fraction) <= 0.02
    assert labeled.all(axis=(1, 3))[kept].all()  # kept blocks are dense
    np.testing.assert_array_equal(weak[weak != 255], mask[weak != 255])


def test_blocks_cover_all_classes_when_asked():
    mask, _ = scene()
    weak = simulate("blocks", block_size=8, fraction=0.05, cover_all_classes=True)["weak_label"]
    assert set(np.unique(weak[weak != 255]).tolist()) == present(mask)


def test_border_blocks_are_partial():
    mask = np.ones((10, 10), np.uint8)
    weak = simulate("blocks", mask=mask, block_size=8, fraction=1.0)["weak_label"]
    assert (weak == 1).all()


# --------------------------------------------------------------------------------------- boxes


def test_boxes_are_tight_around_instances():
    mask, instances = scene()
    out = simulate("boxes")
    assert (out["weak_label"] == 255).all()
    boxes = out["boxes"]
    assert boxes.dtype == np.float32 and boxes.shape == (3, 5)
    for instance_id in (1, 2, 3):
        ys, xs = np.nonzero(instances == instance_id)
        expected = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]  # x1, y1 exclusive
        matches = [box for box in boxes if list(box[:4]) == expected]
        assert len(matches) == 1
        assert matches[0][4] == mask[ys[0], xs[0]]


def test_boxes_without_instances_come_from_connected_components():
    mask, _ = scene()
    boxes = simulate("boxes", instances=None, skip_classes=[0], min_box_pixels=5)["boxes"]
    # class 1: two blobs, class 2: one, class 3: one (with a hole), the 4-px speck of 4 dropped
    assert sorted(boxes[:, 4].tolist()) == [1, 1, 2, 3]
    np.testing.assert_array_equal(boxes[boxes[:, 4] == 3][0], [30, 28, 60, 46, 3])
    one = np.zeros((5, 5), np.uint8)
    one[2, 3] = 1
    np.testing.assert_array_equal(
        simulate("boxes", mask=one, skip_classes=0, min_box_pixels=1)["boxes"], [[3, 2, 4, 3, 1]]
    )


def test_boxes_never_cover_only_ignore_and_tags_list_present_classes():
    mask, instances = scene()
    instances[:, 62:] = 9  # an "instance" made only of ignore pixels
    out = simulate("boxes", instances=instances)
    assert len(out["boxes"]) == 3
    assert set(np.flatnonzero(out["tags"]).tolist()) == present(mask)


# ---------------------------------------------------------------------------------- tags, full


def test_tags_are_the_classes_present_above_min_pixels():
    mask, _ = scene()
    out = simulate("tags")
    assert (out["weak_label"] == 255).all()
    assert set(np.flatnonzero(out["tags"]).tolist()) == present(mask)
    out = simulate("tags", min_pixels=5)
    assert set(np.flatnonzero(out["tags"]).tolist()) == present(mask) - {4}


def test_full_is_the_mask():
    mask, _ = scene()
    np.testing.assert_array_equal(simulate("full")["weak_label"], mask)


def test_every_kind_has_documented_defaults():
    assert set(DEFAULT_PARAMS) == set(KINDS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_short_scribble_is_one_unbranched_stroke_along_the_main_axis(seed):
    mask = np.zeros((15, 70), np.uint8)
    mask[3:12, 5:65] = 1  # a 9x60 bar: its skeleton is a line with short forks at both ends
    weak = simulate("scribbles", seed=seed, mask=mask, length_fraction=0.3)["weak_label"]
    stroke = (weak == 1).astype(np.uint8)
    neighbours = cv2.filter2D(
        stroke, -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT
    )
    neighbours = neighbours.astype(np.int64) - 1  # minus the pixel itself
    assert ((neighbours == 1) & (stroke == 1)).sum() == 2  # two ends, no branch
    assert ((neighbours >= 3) & (stroke == 1)).sum() == 0
