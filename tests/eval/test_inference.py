"""Test-time protocol (multi-scale, flip, sliding window) and dataset evaluation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from stand_ins import PointwiseSegmenter, TinyDataset
from torch import nn

from agmm.errors import LabelError
from agmm.eval.inference import evaluate, predict_logits, sliding_logits
from agmm.eval.metrics import ConfusionMatrix


def blocky_images(batch=2, size=(24, 32), block=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, 3, size[0] // block, size[1] // block, generator=g)
    return coarse.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)


def test_output_is_probabilities_at_input_resolution(model):
    images = torch.randn(2, 3, 13, 17)
    probs = predict_logits(model, images, scales=(0.5, 0.75, 1.25), flip=True, num_classes=4)
    assert probs.shape == (2, 4, 13, 17)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 13, 17))


def test_flip_on_a_flip_equivariant_model_gives_the_single_scale_answer(model):
    images = torch.randn(2, 3, 13, 17)
    torch.testing.assert_close(
        predict_logits(model, images, flip=True), predict_logits(model, images)
    )


def test_multi_scale_and_flip_on_a_pointwise_model_agree_with_single_scale(model):
    images = blocky_images()
    single = predict_logits(model, images)
    multi = predict_logits(model, images, scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True)
    # on flat regions the resized image is the image itself, so probabilities agree exactly there
    interior = torch.zeros(24, 32, dtype=torch.bool)
    for top in range(0, 24, 8):
        for left in range(0, 32, 8):
            interior[top + 3 : top + 5, left + 3 : left + 5] = True
    torch.testing.assert_close(multi[..., interior], single[..., interior], atol=1e-5, rtol=0)
    agreement = (multi.argmax(1) == single.argmax(1)).float().mean()
    assert agreement > 0.9
    constant = torch.randn(1, 3, 1, 1).expand(1, 3, 10, 14)
    torch.testing.assert_close(
        predict_logits(model, constant, scales=(0.5, 1.5), flip=True),
        predict_logits(model, constant),
    )


@pytest.mark.parametrize("crop, stride", [((5, 7), (3, 4)), ((8, 8), (8, 8)), ((20, 30), (5, 5))])
def test_sliding_window_equals_full_image_for_a_pointwise_model(model, crop, stride):
    images = torch.randn(2, 3, 13, 17)
    full = model(images)["logits"]
    torch.testing.assert_close(sliding_logits(model, images, crop=crop, stride=stride), full)
    sliding = dict(crop=crop, stride=stride)
    torch.testing.assert_close(
        predict_logits(model, images, scales=(1.0, 1.5), flip=True, sliding=sliding),
        predict_logits(model, images, scales=(1.0, 1.5), flip=True),
    )


class StridedSegmenter(nn.Module):
    """Predicts at 1/2 resolution and returns logits already upsampled, like DeepLab."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def forward(self, images):
        logits = self.conv(images)
        return {
            "logits": nn.functional.interpolate(logits, size=images.shape[-2:], mode="bilinear")
        }


def test_sliding_windows_of_a_context_model_stay_close_to_full_image():
    model = StridedSegmenter().eval()
    images = torch.randn(1, 3, 30, 40)
    probs = predict_logits(model, images, sliding=dict(crop=(16, 16), stride=(8, 8)))
    assert probs.shape == (1, 4, 30, 40)
    assert (probs.argmax(1) == predict_logits(model, images).argmax(1)).float().mean() > 0.8


def test_evaluate_scores_the_models_own_predictions_as_perfect(model):
    dataset = TinyDataset(model)
    result = evaluate(model, dataset, scales=(1.0,), flip=True, batch_size=2, progress=False)
    assert result["miou"] == pytest.approx(1.0)
    assert result["pixel_acc"] == pytest.approx(1.0)
    assert result["per_class_iou"].shape == (4,)
    assert result["confusion"].sum() == sum(int((s["mask"] != 255).sum()) for s in dataset.samples)
    assert result["num_images"] == 5 and result["classes"] == TinyDataset.classes


def test_evaluate_matches_a_hand_made_confusion_matrix(model):
    dataset = TinyDataset(model, noise=0.3)
    cm = ConfusionMatrix(4)
    for sample in dataset.samples:
        cm.update(model(sample["image"][None])["logits"].argmax(1)[0], sample["mask"])
    result = evaluate(model, dataset, batch_size=3, progress=False)
    assert (result["confusion"] == cm.matrix.numpy()).all()
    assert result["miou"] == pytest.approx(cm.miou())
    assert 0.3 < result["miou"] < 0.9


def test_mask_and_image_size_mismatch_names_the_file(model):
    dataset = TinyDataset(model, num_images=2)
    dataset.samples[1]["mask"] = dataset.samples[1]["mask"][:-1]
    with pytest.raises(LabelError, match="images/img01.jpg.*mask"):
        evaluate(model, dataset, progress=False)


@settings(max_examples=15, deadline=None)
@given(
    height=st.integers(3, 20),
    width=st.integers(3, 20),
    scales=st.lists(st.sampled_from([0.5, 0.75, 1.0, 1.25, 1.5]), min_size=1, max_size=3),
    flip=st.booleans(),
    crop=st.none() | st.tuples(st.integers(2, 12), st.integers(2, 12)),
)
def test_any_protocol_gives_probabilities_at_input_size(height, width, scales, flip, crop):
    model = PointwiseSegmenter().eval()
    sliding = dict(crop=crop, stride=(max(1, crop[0] // 2), max(1, crop[1] // 2))) if crop else None
    probs = predict_logits(
        model, torch.randn(2, 3, height, width), scales=scales, flip=flip, sliding=sliding
    )
    assert probs.shape == (2, 4, height, width)
    assert torch.isfinite(probs).all() and (probs >= 0).all()
    torch.testing.assert_close(probs.sum(1), torch.ones(2, height, width))
