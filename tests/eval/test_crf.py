"""Dense CRF keeps shapes and labels valid and does not destroy a clean prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stand_ins import TinyDataset

from agmm.eval.crf import crf_refine
from agmm.eval.inference import evaluate

pytest.importorskip("pydensecrf.densecrf")


def two_region_scene(height=24, width=32):
    """Left half dark, right half bright; labels 0 | 2."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, width // 2 :] = 220
    labels = np.zeros((height, width), dtype=np.int64)
    labels[:, width // 2 :] = 2
    return image, labels


def test_shapes_and_probabilities_stay_valid():
    image, labels = two_region_scene()
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=labels.shape).transpose(2, 0, 1).astype(np.float32)
    refined = crf_refine(image, probs, iterations=5)
    assert refined.shape == probs.shape and refined.dtype == np.float32
    assert np.isfinite(refined).all()
    np.testing.assert_allclose(refined.sum(0), 1.0, atol=1e-4)
    assert set(np.unique(refined.argmax(0))) <= {0, 1, 2}


def test_a_clean_prediction_survives_and_noise_along_edges_is_cleaned():
    image, labels = two_region_scene()
    clean = np.where(np.arange(3)[:, None, None] == labels, 0.9, 0.05).astype(np.float32)
    assert (crf_refine(image, clean).argmax(0) == labels).all()
    # flip a few pixels inside each region to a confident-ish wrong class
    noisy = clean.copy()
    rng = np.random.default_rng(1)
    wrong = rng.random(labels.shape) < 0.1
    noisy[:, wrong] = noisy[:, wrong][[2, 1, 0]]
    assert (noisy.argmax(0) != labels).mean() > 0.05
    refined = crf_refine(image, noisy).argmax(0)
    assert (refined != labels).mean() < (noisy.argmax(0) != labels).mean()


def test_bad_shapes_are_reported():
    image, labels = two_region_scene()
    with pytest.raises(ValueError, match="crf_refine needs"):
        crf_refine(image[:-1], np.ones((3, *labels.shape), dtype=np.float32) / 3)


def test_evaluate_with_crf_runs_and_keeps_a_perfect_model_near_perfect(model):
    dataset = TinyDataset(model, num_images=2)
    result = evaluate(model, dataset, crf={"iterations": 2, "bi_w": 0.5}, progress=False)
    assert result["pixel_acc"] > 0.8
    assert torch.isfinite(torch.as_tensor(result["miou"]))
