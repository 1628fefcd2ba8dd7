"""CAM seeds: thresholds with and without background, tags, batching, quality of good/bad CAMs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from agmm.seeds import cam_loss, cam_seeds, normalise_cams, seed_quality, threshold_cams

IGNORE = 255


def _cams(*maps):
    """Stack (H, W) maps into (1, K, H, W)."""
    return torch.stack([torch.as_tensor(m, dtype=torch.float32) for m in maps])[None]


def test_with_background_high_is_class_low_is_background_middle_is_ignored():
    empty = torch.zeros(4, 4)
    person = torch.tensor(
        [[1.0, 0.9, 0.5, 0.1], [0.8, 0.5, 0.3, 0.0], [0.2, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    )
    seeds = cam_seeds(
        _cams(empty, person, empty),
        torch.tensor([[1.0, 1.0, 0.0]]),
        image_size=(4, 4),
        has_background=True,
    )
    expected = torch.tensor([[1, 1, IGNORE, 0], [1, IGNORE, IGNORE, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert seeds.dtype == torch.int64
    assert torch.equal(seeds[0], expected)


def test_untagged_classes_never_seed_and_background_cam_is_not_used():
    strong = torch.ones(3, 3)
    strong[0, 0] = 0.0
    cams = _cams(strong, strong * 0.1 + torch.eye(3), strong)  # bkg and class 2 strong, untagged 2
    seeds = cam_seeds(cams, torch.tensor([[1.0, 1.0, 0.0]]), image_size=(3, 3), has_background=True)
    assert set(seeds.unique().tolist()) <= {0, 1, IGNORE}
    assert torch.equal(seeds[0].diagonal(), torch.tensor([1, 1, 1]))


def test_without_background_only_a_clear_winner_is_seeded():
    road = torch.tensor([[1.0, 0.9, 0.6, 0.0]])
    car = torch.tensor([[0.0, 0.85, 0.0, 1.0]])
    seeds = cam_seeds(
        _cams(road, car, torch.ones(1, 4)),  # class 2 untagged: ignored despite its high CAM
        torch.tensor([[1.0, 1.0, 0.0]]),
        image_size=(1, 4),
        has_background=False,
    )
    # pixel 1: both above 0.7 but 0.9 - 0.85 < margin; pixel 2: 0.6 < high; nothing is background
    assert seeds[0, 0].tolist() == [0, IGNORE, IGNORE, 1]


def test_image_without_tags_is_all_ignore():
    cams = torch.rand(2, 3, 4, 4)
    tags = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    seeds = cam_seeds(cams, tags, image_size=(8, 8), has_background=True)
    assert (seeds[0] == IGNORE).all()
    assert (seeds[1] != IGNORE).any()


def test_batch_equals_one_image_at_a_time_and_upsamples_to_the_image():
    cams = torch.randn(3, 4, 5, 6)
    tags = torch.tensor([[1.0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 1, 1]])
    for background in (True, False):
        batch = cam_seeds(cams, tags, image_size=(20, 24), has_background=background)
        assert batch.shape == (3, 20, 24)
        for index in range(3):
            single = cam_seeds(
                cams[index : index + 1],
                tags[index : index + 1],
                image_size=(20, 24),
                has_background=background,
            )
            assert torch.equal(batch[index], single[0])


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    background=st.booleans(),
    tag_bits=st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_seeds_are_only_tagged_classes_background_or_ignore(seed, background, tag_bits):
    generator = torch.Generator().manual_seed(seed)
    cams = torch.randn(1, 4, 3, 3, generator=generator)
    tags = torch.tensor([tag_bits], dtype=torch.float32)
    seeds = cam_seeds(cams, tags, image_size=(6, 6), has_background=background)
    allowed = {k for k, bit in enumerate(tag_bits) if bit and (k > 0 or not background)}
    allowed |= {IGNORE} | ({0} if background and any(tag_bits) else set())
    assert set(seeds.unique().tolist()) <= allowed


def _scene():
    """A 32×32 mask: background 0, class 1 top-left square, class 2 bottom-right square."""
    mask = torch.zeros(1, 32, 32, dtype=torch.int64)
    mask[0, 4:14, 4:14] = 1
    mask[0, 18:28, 18:28] = 2
    return mask


def test_correct_cams_give_precise_seeds_and_broken_cams_do_not():
    mask = _scene()
    tags = torch.tensor([[1.0, 1.0, 1.0]])
    one_hot = F.one_hot(mask, 3).permute(0, 3, 1, 2).float()
    correct = F.avg_pool2d(one_hot, 4)  # (1, 3, 8, 8): what a good classifier's CAM looks like
    broken = {"constant": torch.ones(1, 3, 8, 8), "random": torch.rand(1, 3, 8, 8)}
    good = seed_quality(cam_seeds(correct, tags, image_size=(32, 32), has_background=True), mask, 3)
    assert good["precision_miou"] > 0.9
    assert good["coverage"] > 0.5
    for cams in broken.values():
        bad = seed_quality(cam_seeds(cams, tags, image_size=(32, 32), has_background=True), mask, 3)
        assert bad["precision_miou"] < 0.5


def test_cam_loss_is_multilabel_soft_margin_and_skips_background():
    logits = torch.randn(4, 5)
    tags = (torch.rand(4, 5) > 0.5).float()
    expected = F.multilabel_soft_margin_loss(logits, tags)
    torch.testing.assert_close(cam_loss(logits, tags), expected)
    expected = F.multilabel_soft_margin_loss(logits[:, 1:], tags[:, 1:])
    torch.testing.assert_close(cam_loss(logits, tags, has_background=True), expected)


def test_crf_refinement_runs_on_the_image():
    pytest.importorskip("pydensecrf.densecrf")
    pytest.importorskip("agmm.eval.crf")
    mask = _scene()
    image = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    image[0][mask[0] == 1] = torch.tensor([255, 0, 0], dtype=torch.uint8)
    image[0][mask[0] == 2] = torch.tensor([0, 255, 0], dtype=torch.uint8)
    cams = F.avg_pool2d(F.one_hot(mask, 3).permute(0, 3, 1, 2).float(), 8)  # coarse: 4×4
    tags = torch.tensor([[1.0, 1.0, 1.0]])
    plain = cam_seeds(cams, tags, image_size=(32, 32), has_background=True)
    refined = cam_seeds(
        cams, tags, image_size=(32, 32), has_background=True, refine="crf", images=image.numpy()
    )
    assert refined.shape == plain.shape
    refined_quality = seed_quality(refined, mask, 3)
    assert refined_quality["precision_miou"] > 0.8
    with pytest.raises(ValueError, match="images"):
        cam_seeds(cams, tags, image_size=(32, 32), has_background=True, refine="crf")


@pytest.mark.parametrize("background", [True, False])
def test_only_tagged_channels_are_upsampled_without_changing_the_result(background):
    cams = torch.randn(4, 6, 5, 5)
    tags = torch.tensor(
        [[1.0, 1, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 1]]
    )
    size = (15, 15)
    reference = threshold_cams(
        normalise_cams(cams, tags, image_size=size, has_background=background),
        tags,
        has_background=background,
    )
    assert torch.equal(cam_seeds(cams, tags, image_size=size, has_background=background), reference)
    if background:  # no seedable class in the whole batch: background everywhere
        background_only = torch.zeros(2, 6)
        background_only[:, 0] = 1.0
        seeds = cam_seeds(cams[:2], background_only, image_size=size, has_background=True)
        assert (seeds == 0).all()
