"""AGMMLoss fits only the classes labeled in the batch: the same loss, gradients and maps."""

from __future__ import annotations

import pytest
import torch

from agmm import AGMMLoss

K = 7
ABSENT = (1, 4, 5)  # labeled in no image of the batch


def make_batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(3, 6, 4, 5, generator=gen, dtype=torch.float64)
    logits = torch.randn(3, K, 16, 20, generator=gen, dtype=torch.float64)
    present = torch.tensor([k for k in range(K) if k not in ABSENT])
    labels = present[torch.randint(0, len(present), (3, 16, 20), generator=gen)]
    labels[torch.rand(3, 16, 20, generator=gen) > 0.15] = 255
    labels[2, :, :] = 255  # an image without labels
    labels[2, 3, 4] = 6  # ... but one click
    valid = torch.ones(3, 16, 20, dtype=torch.bool)
    valid[1, :, -6:] = False
    return features, logits, labels, valid


OPTIONS = [
    {},
    {"variant": "paper"},
    {"self_pooling": "logits"},
    {"pseudo_labels": "assign"},
    {"self_loss": "ce", "self_threshold": 0.3, "self_reduction": "class"},
    {"self_target": "gmm_x_p_within", "self_reduction": "class", "seg_reduction": "class"},
    {"posterior": True, "responsibilities": "soft", "distance": "l1", "con": "eq13"},
    {"self_resolution": "label", "oem_steps": 2},
]
PAPER = {"sigma_prior": 0.0, "self_target": "gmm", "oem_steps": 1}


def _criterion(options: dict, classes: int) -> tuple[dict, AGMMLoss]:
    """The options with the library's defaults (or the paper's), and a float64 AGMMLoss."""
    options = dict(options)
    if options.pop("variant", None) == "paper":
        options.update(PAPER)
    options.setdefault("sigma_prior", 4.0)
    options.setdefault("self_target", "gmm_x_p")
    torch.manual_seed(0)
    return options, AGMMLoss(in_channels=6, num_classes=classes, embed_dim=5, **options).double()


@pytest.mark.parametrize("options", OPTIONS)
def test_fitting_the_batch_classes_only_changes_nothing(options):
    options, criterion = _criterion(options, K)
    features, logits, labels, valid = make_batch()
    pixels = (labels != 255).nonzero(as_tuple=True)
    classes = criterion._batch_classes(labels, pixels, None)
    assert classes.tolist() == [k for k in range(K) if k not in ABSENT]

    compressed = _assert_same_as_all_classes(criterion, features, logits, labels, valid)
    assert not compressed["present"][:, list(ABSENT)].any()


def test_every_class_labeled_or_options_that_need_all_classes_fit_all_k():
    features, logits, labels, valid = make_batch()
    labels[0, 0, :K] = torch.arange(K)  # now every class is labeled somewhere
    pixels = (labels != 255).nonzero(as_tuple=True)
    assert AGMMLoss(in_channels=6, num_classes=K)._batch_classes(labels, pixels, None) is None
    labels[0, 0, :K] = 255
    pixels = (labels != 255).nonzero(as_tuple=True)
    every = AGMMLoss(in_channels=6, num_classes=K, self_classes="all")
    assert every._batch_classes(labels, pixels, None) is None
    prior = AGMMLoss(in_channels=6, num_classes=K, class_prior_momentum=0.9)
    image_classes = torch.ones(3, K, dtype=torch.bool)
    assert prior._batch_classes(labels, pixels, image_classes) is None
    assert prior._batch_classes(labels, pixels, None) is not None


PER_IMAGE = ((0, 2, 3), (5, 6), (), (8, 10, 11))  # each image's classes: few shared, one empty


def make_sparse_batch(seed=0, classes=12):
    gen = torch.Generator().manual_seed(seed)
    batch = len(PER_IMAGE)
    features = torch.randn(batch, 6, 4, 5, generator=gen, dtype=torch.float64)
    logits = torch.randn(batch, classes, 16, 20, generator=gen, dtype=torch.float64)
    labels = torch.full((batch, 16, 20), 255)
    for b, own in enumerate(PER_IMAGE):
        if own:
            picks = torch.tensor(own)[torch.randint(0, len(own), (16, 20), generator=gen)]
            keep = torch.rand(16, 20, generator=gen) < 0.15
            labels[b][keep] = picks[keep]
    valid = torch.ones(batch, 16, 20, dtype=torch.bool)
    valid[1, :, -6:] = False
    return features, logits, labels, valid


@pytest.mark.parametrize("options", OPTIONS)
def test_fitting_each_images_classes_only_changes_nothing(options):
    """Images that share few classes: the mixture in per-image slots (B, J) instead of the
    batch's K' classes gives the same loss, gradients and maps."""
    options, criterion = _criterion(options, 12)
    features, logits, labels, valid = make_sparse_batch()
    pixels = (labels != 255).nonzero(as_tuple=True)
    classes = criterion._batch_classes(labels, pixels, None)
    if options.get("self_loss") == "ce" and options.get("self_reduction") == "class":
        assert classes.dim() == 1  # a class-balanced mean over the batch needs shared ids
    else:
        assert classes.shape == (4, 3)
        for b, own in enumerate(PER_IMAGE):
            assert classes[b, : len(own)].tolist() == list(own)
            assert len(set(classes[b].tolist())) == 3  # distinct classes in every image's slots

    compressed = _assert_same_as_all_classes(criterion, features, logits, labels, valid)
    for b, own in enumerate(PER_IMAGE):
        assert compressed["present"][b].nonzero()[:, 0].tolist() == list(own)


def _assert_same_as_all_classes(criterion, features, logits, labels, valid):
    """AGMMLoss on the batch as it fits it and with the mixture over all K classes: the same loss,
    terms, gradients (features, logits, squeeze) and maps. Returns the fitted run's outputs."""

    compressed = run_patched(criterion, features, logits, labels, valid)
    full = run_patched(criterion, features, logits, labels, valid, "_batch_classes", None)
    torch.testing.assert_close(compressed[0]["loss"], full[0]["loss"], rtol=1e-10, atol=1e-12)
    for name in ("seg", "self", "weak", "con"):
        torch.testing.assert_close(compressed[0]["terms"][name], full[0]["terms"][name])
    for got, expected in zip(compressed[1:], full[1:], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    for key in ("gmm_old", "gmm_new", "present", "self_target"):
        if key in full[0]:
            assert compressed[0][key].shape == full[0][key].shape
            torch.testing.assert_close(compressed[0][key], full[0][key], rtol=1e-9, atol=1e-12)
    return compressed[0]


def run_patched(criterion, features, logits, labels, valid, method=None, result=None):
    """Forward + backward of ``criterion`` with ``method`` (a name, optional) patched to return
    ``result``: ``(outputs, features' grad, logits' grad, squeeze weight grad or None)``."""
    feats = features.clone().requires_grad_()
    logs = logits.clone().requires_grad_()
    criterion.zero_grad()
    if method is not None:
        setattr(criterion, method, lambda *args: result)
    try:
        out = criterion(feats, logs, labels, valid_mask=valid)
    finally:
        criterion.__dict__.pop(method, None)
    out["loss"].backward()
    squeeze_grad = criterion.squeeze.weight.grad  # None with stop_gradient
    return out, feats.grad, logs.grad, None if squeeze_grad is None else squeeze_grad.clone()
