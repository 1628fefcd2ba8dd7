"""Pseudo labels for a second stage, and the quality of weak labels, G and P."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from stand_ins import TinyDataset

from agmm.eval.predict import read_label_png
from agmm.eval.pseudo_labels import (
    PseudoLabelQuality,
    gmm_to_labels,
    pseudo_label_quality,
    write_pseudo_labels,
)


def with_point_labels(dataset, every=7):
    """Weak labels = every 7th labeled mask pixel (exact, like simulated points)."""
    for sample in dataset.samples:
        weak = torch.full_like(sample["mask"], 255)
        flat = weak.view(-1)
        flat[::every] = sample["mask"].view(-1)[::every]
        sample["weak_label"] = weak
    return dataset


def test_gmm_labels_only_pick_present_classes():
    gmm = torch.zeros(2, 3, 2, 2)
    gmm[0, 2] = torch.tensor([[0.0, 0.2], [0.9, 0.0]])  # underflows to 0 at two pixels
    gmm[0, 1] = torch.tensor([[0.0, 0.5], [0.1, 0.0]])
    present = torch.tensor([[False, True, True], [False, False, False]])
    labels = gmm_to_labels(gmm, (2, 2), present)
    assert labels[0].tolist() == [[1, 1], [2, 1]]  # ties at 0 go to a present class, not 0
    assert (labels[1] == 255).all()  # no present class: no label


def test_quality_matches_hand_counts():
    masks = torch.tensor([[[0, 0, 1, 1], [1, 1, 255, 255]]])
    weak = torch.tensor([[[0, 255, 1, 255], [0, 255, 1, 255]]])  # one wrong weak pixel
    logits = torch.nn.functional.one_hot(torch.tensor([[[0, 0, 1, 1], [1, 1, 1, 1]]]), 2)
    gmm = torch.zeros(1, 2, 2, 4)
    gmm[:, 0] = 1.0  # G says "all class 0"
    quality = PseudoLabelQuality(2)
    quality.update(masks, weak_labels=weak, logits=logits.permute(0, 3, 1, 2).float(), gmm_new=gmm)
    result = quality.compute()
    assert result["weak_coverage"] == pytest.approx(3 / 6)  # (1, 2) is labeled but void
    assert result["weak_pixel_acc"] == pytest.approx(2 / 3)
    assert result["seg_miou"] == pytest.approx(1.0)
    assert result["gmm_new_pixel_acc"] == pytest.approx(2 / 6)
    assert result["gmm_new_miou"] == pytest.approx((2 / 6 + 0.0) / 2)
    assert math.isnan(result["gmm_old_miou"])


def test_pseudo_label_quality_with_the_real_gmm_module(model):
    from agmm.gmm.loss import AGMMLoss

    dataset = with_point_labels(TinyDataset(model, num_images=3))
    loss_module = AGMMLoss(in_channels=3, num_classes=4, embed_dim=8)
    result = pseudo_label_quality(
        model, dataset, loss_module=loss_module, batch_size=2, progress=False
    )
    assert result["num_images"] == 3
    assert result["weak_miou"] == pytest.approx(1.0)  # points copied from the masks are exact
    assert 0.1 < result["weak_coverage"] < 0.2
    assert result["seg_miou"] == pytest.approx(1.0)  # masks are the model's own predictions
    for name in ("gmm_old_miou", "gmm_new_miou"):
        assert 0.0 <= result[name] <= 1.0
    without_gmm = pseudo_label_quality(model, dataset, progress=False, max_images=1)
    assert math.isnan(without_gmm["gmm_new_miou"]) and without_gmm["num_images"] == 1


def test_written_pseudo_labels_are_the_predictions_plus_the_weak_labels(tmp_path, model):
    dataset = with_point_labels(TinyDataset(model, num_images=3, noise=0.5))
    result = write_pseudo_labels(model, dataset, tmp_path / "stage2", flip=True, progress=False)
    assert result["num_images"] == 3
    for sample in dataset.samples:
        label = read_label_png(tmp_path / "stage2" / f"{sample['name']}.png")
        prediction = model(sample["image"][None])["logits"][0].argmax(0).numpy()
        weak = sample["weak_label"].numpy()
        expected = np.where(weak != 255, weak, prediction)
        assert (label == expected).all()
    plain = write_pseudo_labels(
        model, dataset, tmp_path / "plain", keep_weak_labels=False, progress=False
    )
    assert plain["miou"] < result["miou"]  # noisy masks agree with the exact weak pixels
