"""ConfusionMatrix against hand-computed matrices, ignore pixels, absent classes and DDP."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agmm.eval.metrics import ConfusionMatrix


def test_matrix_matches_hand_count_with_ignore_pixels():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    expected = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert cm.matrix.tolist() == expected
    # IoU_0 = 1 / (2 + 2 - 1), IoU_1 = 2 / (2 + 3 - 2), IoU_2 = 1 / (2 + 1 - 1)
    np.testing.assert_allclose(cm.per_class_iou(), [1 / 3, 2 / 3, 1 / 2])
    assert cm.miou() == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert cm.pixel_accuracy() == pytest.approx(4 / 6)


def test_class_absent_from_pred_and_target_is_nan_and_left_out_of_the_mean():
    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([0, 0, 1, 3]), torch.tensor([0, 0, 1, 1]))
    iou = cm.per_class_iou()
    assert math.isnan(iou[2])
    # class 3 is predicted but never true: IoU 0, counted in the mean
    np.testing.assert_allclose(iou[[0, 1, 3]], [1.0, 0.5, 0.0])
    assert cm.miou() == pytest.approx(0.5)


def test_prediction_outside_classes_counts_as_a_miss():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 255]), torch.tensor([0, 0]))
    assert cm.matrix.tolist() == [[1, 0], [0, 0]]
    assert cm.per_class_iou()[0] == pytest.approx(0.5)
    assert cm.pixel_accuracy() == pytest.approx(0.5)


def test_all_ignored_gives_nan_not_an_error():
    cm = ConfusionMatrix(3)
    cm.update(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 255))
    assert math.isnan(cm.miou()) and math.isnan(cm.pixel_accuracy())


def test_bad_target_value_and_shape_are_reported():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="value 7"):
        cm.update(torch.tensor([0]), torch.tensor([7]))
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, 3), torch.zeros(3, 2))


def test_summary_is_json_ready():
    import json

    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    summary = cm.summary(["road", "sky", "car"])
    assert summary["per_class_iou"] == {"road": 1.0, "sky": 1.0, "car": None}
    json.dumps(summary, allow_nan=False)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 5),
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=60),
)
def test_matches_a_python_loop(num_classes, pairs):
    pred = torch.tensor([p for p, _ in pairs])
    target = torch.tensor([t if t < num_classes else 255 for _, t in pairs])
    cm = ConfusionMatrix(num_classes)
    # updating in two halves is the same as once
    cm.update(pred[: len(pairs) // 2], target[: len(pairs) // 2])
    cm.update(pred[len(pairs) // 2 :], target[len(pairs) // 2 :])
    expected = np.zeros((num_classes, num_classes), dtype=np.int64)
    for p, t in zip(pred.tolist(), target.tolist()):
        if t != 255 and p < num_classes:
            expected[t, p] += 1
    assert cm.matrix.numpy().tolist() == expected.tolist()


def test_all_reduce_without_distributed_is_a_no_op():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 0]))
    before = cm.matrix.clone()
    assert torch.equal(cm.all_reduce().matrix, before)
