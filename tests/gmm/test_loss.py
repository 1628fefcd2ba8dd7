"""AGMMLoss: every term against the loop references, switches, robustness, bad input."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from agmm import AGMMLoss
from agmm.gmm import functional as gmm_fn
from tests.gmm import reference

K = 4


def make_batch(seed=0, batch=2, size=(16, 12), stride=4, channels=6, density=0.1, classes=K):
    gen = torch.Generator().manual_seed(seed)
    h, w = size[0] // stride, size[1] // stride
    features = torch.randn(batch, channels, h, w, generator=gen, dtype=torch.float64)
    logits = torch.randn(batch, classes, *size, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, (batch, *size), generator=gen)
    labels[torch.rand(batch, *size, generator=gen) > density] = 255
    return features, logits, labels


def make_loss(**kwargs):
    torch.manual_seed(0)
    return AGMMLoss(in_channels=6, num_classes=K, embed_dim=5, **kwargs).double()


@pytest.mark.parametrize("distance", ["l1", "sqeuclid"])
@pytest.mark.parametrize("con", ["eq14", "eq13"])
@pytest.mark.parametrize("resolution", ["feature", "label"])
@pytest.mark.parametrize("responsibilities", ["hard", "soft"])
@pytest.mark.parametrize("pooling", ["logits", "probs"])
def test_terms_match_the_loop_reference(distance, con, resolution, responsibilities, pooling):
    features, logits, labels = make_batch()
    valid = torch.ones(labels.shape, dtype=torch.bool)
    valid[1, :, -5:] = False
    criterion = make_loss(
        distance=distance,
        con=con,
        self_resolution=resolution,
        self_pooling=pooling,
        responsibilities=responsibilities,
    )
    out = criterion(features, logits, labels, valid_mask=valid)

    feats = criterion.squeeze(features).flatten(2).detach()
    weights = reference.pool_labels(labels, K, (4, 3))
    present = weights.sum(2) > 0
    valid_cells = gmm_fn.pool_valid_mask(valid, (4, 3), dtype=torch.float64)
    mu_old, sigma_old, g_old = reference.fit(
        feats, weights, present, distance, criterion.sigma_floor
    )
    resp = reference.m_step_responsibilities(g_old, present, responsibilities)
    mu, sigma, g_new = reference.fit(
        feats,
        resp * valid_cells[:, None],
        present,
        distance,
        criterion.sigma_floor,
        previous=(mu_old, sigma_old),
    )
    g_up = F.interpolate(
        g_new.view(2, K, 4, 3), size=(16, 12), mode="bilinear", align_corners=False
    )

    assert out["terms"]["seg"].item() == pytest.approx(
        F.cross_entropy(logits, labels, ignore_index=255).item(), rel=1e-9
    )
    probs = torch.softmax(logits, dim=1)
    if resolution == "label":
        expected_self = reference.self_loss(probs, g_up, present, valid)
    else:  # P averaged over each 4x4 cell's valid pixels, cells weighted by their valid share
        valid_f = valid[:, None].double()
        pooled_valid = F.avg_pool2d(valid_f, 4)
        if pooling == "probs":
            pooled_probs = F.avg_pool2d(probs * valid_f, 4) / pooled_valid.clamp_min(1e-6)
        else:  # the softmax of the cell's mean logit over its valid pixels
            pooled_logits = F.avg_pool2d(logits * valid_f, 4) / pooled_valid.clamp_min(1e-6)
            pooled_probs = torch.softmax(pooled_logits, dim=1)
        g_grid = g_new.view(2, K, 4, 3)
        expected_self = reference.self_loss(pooled_probs, g_grid, present, pooled_valid[:, 0])
    assert out["terms"]["self"].item() == pytest.approx(expected_self, rel=1e-6)
    assert out["terms"]["weak"].item() == pytest.approx(
        reference.weak_loss(g_up, labels, present), rel=1e-6
    )
    if con == "eq14":
        sq_dist = torch.stack(
            [
                torch.tensor(
                    [
                        [
                            reference.distance_sq(feats[b, :, n], mu[b, k], distance)
                            for n in range(12)
                        ]
                        for k in range(K)
                    ]
                )
                for b in range(2)
            ]
        )
        expected_con = reference.contrastive_eq14(sq_dist, weights, present)
    else:
        expected_con = reference.contrastive_eq13(mu, present, distance)
    assert out["terms"]["con"].item() == pytest.approx(expected_con, rel=1e-6)
    torch.testing.assert_close(out["gmm_old"], g_old.view(2, K, 4, 3))
    torch.testing.assert_close(out["gmm_new"], g_new.view(2, K, 4, 3))
    total = sum(out["terms"][name] for name in ("seg", "self", "weak", "con"))
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-9)


def test_lambdas_weight_the_terms():
    features, logits, labels = make_batch()
    plain = make_loss()(features, logits, labels)
    weighted = make_loss(
        lambda_seg=2.0, lambda_gmm=0.5, lambda_self=3.0, lambda_weak=0.0, lambda_con=1.0
    )(features, logits, labels)
    t = plain["terms"]
    expected = 2.0 * t["seg"] + 0.5 * (3.0 * t["self"] + 0.0 * t["weak"] + 1.0 * t["con"])
    assert weighted["loss"].item() == pytest.approx(expected.item(), rel=1e-9)


def test_cls_term_uses_tags():
    features, logits, labels = make_batch()
    cls_logits = torch.randn(2, K, dtype=torch.float64)
    tags = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 1]], dtype=torch.float64)
    out = make_loss(lambda_cls=0.5)(features, logits, labels, tags=tags, cls_logits=cls_logits)
    expected = F.multilabel_soft_margin_loss(cls_logits, tags)
    assert out["terms"]["cls"].item() == pytest.approx(expected.item())


@pytest.mark.parametrize(
    "flags,zero_terms",
    [
        ({"use_gmm": False}, {"self", "weak", "con"}),
        ({"use_self": False}, {"self"}),
        ({"use_weak": False}, {"weak"}),
        ({"use_con": False}, {"con"}),
        ({"stop_gradient": True}, {"weak", "con"}),
    ],
)
def test_each_term_can_be_switched_off(flags, zero_terms):
    features, logits, labels = make_batch()
    out = make_loss(**flags)(features, logits, labels)
    for name in ("self", "weak", "con"):
        assert (out["terms"][name] == 0).item() == (name in zero_terms), name


def test_oem_off_gives_g_new_equal_to_g_old():
    features, logits, labels = make_batch()
    out = make_loss(oem_steps=0)(features, logits, labels)
    assert torch.equal(out["gmm_new"], out["gmm_old"])
    out = make_loss(oem_steps=1)(features, logits, labels)
    assert not torch.allclose(out["gmm_new"], out["gmm_old"])


def test_stop_gradient_keeps_the_squeeze_conv_out_of_the_graph():
    features, logits, labels = make_batch()
    logits.requires_grad_(True)
    criterion = make_loss(stop_gradient=True)
    criterion(features, logits, labels)["loss"].backward()
    assert criterion.squeeze.weight.grad is None
    assert logits.grad.abs().sum() > 0
    criterion = make_loss()
    criterion(features, logits, labels)["loss"].backward()
    assert criterion.squeeze.weight.grad.abs().sum() > 0


def test_label_assignment_mode_trains_on_eq18_labels():
    features, logits, labels = make_batch(density=0.3)
    criterion = make_loss(pseudo_labels="assign")
    out = criterion(features, logits, labels)
    fitted = criterion.fit_gmm(features, labels)
    assigned = gmm_fn.assign_labels(
        fitted["new"].sq_dist, fitted["new"].sigma, fitted["present"]
    ).view(2, 1, 4, 3)
    assigned = F.interpolate(assigned.double(), size=(16, 12), mode="nearest").long()[:, 0]
    expected = F.cross_entropy(logits, assigned, ignore_index=255)
    assert out["terms"]["self"].item() == pytest.approx(expected.item(), rel=1e-9)


@pytest.mark.parametrize("stride", [4, 8])
def test_one_pixel_label_at_input_resolution_shapes_g(stride):
    """A click at full resolution with features at 1/4 or 1/8 still makes its class present."""
    features, logits, _ = make_batch(size=(32, 32), stride=stride)
    labels = torch.full((2, 32, 32), 255)
    labels[0, 17, 3] = 2
    out = make_loss()(features, logits, labels)
    assert out["present"][0].tolist() == [False, False, True, False]
    cell = (17 // stride, 3 // stride)
    assert out["gmm_old"][0, 2][cell].item() == pytest.approx(1.0)
    assert out["terms"]["weak"] > 0


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 1000),
    density=st.sampled_from([0.0, 0.003, 0.2, 1.0]),
    classes=st.integers(1, 4),
    distance=st.sampled_from(["l1", "sqeuclid"]),
    reduction=st.sampled_from(["pixel", "class"]),
    pseudo_labels=st.sampled_from(["gmm", "assign"]),
    sigma_prior=st.sampled_from([0.0, 4.0]),
    self_target=st.sampled_from(["gmm", "gmm_x_p"]),
)
def test_loss_and_gradients_are_finite(
    seed, density, classes, distance, reduction, pseudo_labels, sigma_prior, self_target
):
    """Empty images, all-ignored crops, one-pixel and single classes never give NaN or inf, with
    either reduction of L_seg / L_self, either kind of pseudo label, with or without the sigma
    prior and the G x P target."""
    features, logits, labels = make_batch(seed=seed, density=density, classes=classes)
    labels[labels >= classes] = 255
    features.requires_grad_(True)
    logits.requires_grad_(True)
    torch.manual_seed(0)
    criterion = AGMMLoss(
        in_channels=6,
        num_classes=classes,
        embed_dim=5,
        distance=distance,
        seg_reduction=reduction,
        self_reduction=reduction,
        pseudo_labels=pseudo_labels,
        sigma_prior=sigma_prior,
        self_target=self_target,
    ).double()
    out = criterion(features, logits, labels)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert torch.isfinite(features.grad).all() and torch.isfinite(logits.grad).all()
    assert out["gmm_new"].min() >= 0 and out["gmm_new"].max() <= 1


def test_all_ignored_batch_gives_zero_gmm_terms_but_a_graph():
    features, logits, _ = make_batch()
    logits.requires_grad_(True)
    labels = torch.full((2, 16, 12), 255)
    out = make_loss()(features, logits, labels)
    assert all(value == 0 for value in out["terms"].values())
    out["loss"].backward()  # attached to the graph, so DDP and optimisers see every parameter
    assert logits.grad is not None


def test_runs_in_float32_under_autocast():
    features, logits, labels = make_batch()
    criterion = AGMMLoss(in_channels=6, num_classes=K)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = criterion(features.float().bfloat16(), logits.float(), labels)
    assert out["gmm_new"].dtype == torch.float32
    assert out["embeddings"].dtype == torch.float32
    assert torch.isfinite(out["loss"])


@pytest.mark.parametrize("pooling", ["logits", "probs"])
@pytest.mark.parametrize("self_target", ["gmm", "gmm_x_p"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_every_l_self_path_runs_under_bf16_autocast(pooling, self_target, channels_last, padded):
    """bf16 logits and features, as a model under autocast gives them: every way to L_self
    (the matrix-product pooling of NCHW maps included, which autocast runs in bf16) trains."""
    features, logits, labels = make_batch(size=(16, 16))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    logits = logits.bfloat16().contiguous(memory_format=memory_format).requires_grad_()
    features = features.bfloat16().requires_grad_()
    valid = torch.ones(labels.shape, dtype=torch.bool)
    if padded:
        valid[1, :, -5:] = False
    criterion = AGMMLoss(
        in_channels=6, num_classes=K, self_pooling=pooling, self_target=self_target
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = criterion(features, logits, labels, valid_mask=valid)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["terms"]["self"] > 0
    assert torch.isfinite(logits.grad).all() and torch.isfinite(features.grad).all()


def test_the_squeeze_runs_in_the_autocast_precision_and_the_gmm_in_float32():
    features, logits, labels = make_batch()
    criterion = AGMMLoss(in_channels=6, num_classes=K)
    features = features.float().bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = criterion(features, logits.float(), labels)["embeddings"]
    # the squeeze's bf16 product, then float32: the bf16 1x1 convolution's output up to rounding
    weight = criterion.squeeze.weight.bfloat16()
    expected = F.conv2d(features, weight, criterion.squeeze.bias.bfloat16()).float()
    torch.testing.assert_close(embeddings, expected, rtol=1e-2, atol=1e-2)
    float32_maths = criterion.squeeze(features.float()).detach()
    assert (embeddings - float32_maths).abs().max() > 1e-4  # bf16 rounding, not float32's 1e-7
    # bf16 features without autocast: the module's precision throughout
    out = criterion(features, logits.float(), labels)
    torch.testing.assert_close(out["embeddings"], criterion.squeeze(features.float()))


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda f, g, y: (f[:, :3], g, y), "features: expected 6 channels"),
        (lambda f, g, y: (f, g[:, :3], y), "logits: expected shape"),
        (lambda f, g, y: (f, g, y[:, :5]), "weak_labels: expected shape"),
        (lambda f, g, y: (f, g, y.float()), "weak_labels: expected an integer tensor"),
        (lambda f, g, y: (f.long(), g, y), "features: expected a floating-point tensor"),
        (lambda f, g, y: (f[0], g, y), "features: expected 4 dimensions"),
        (
            lambda f, g, y: (f, g, y.masked_fill(y == 1, 7)),
            "weak_labels: value 7 is not a class id",
        ),
        (lambda f, g, y: (f, g, y.masked_fill(y == 1, -1)), "weak_labels: value -1"),
    ],
)
def test_bad_input_names_the_argument(mutate, message):
    features, logits, labels = make_batch(density=0.5)
    with pytest.raises(ValueError, match=re.escape(message)):
        make_loss()(*mutate(features, logits, labels))


def test_bad_tags_and_options_are_rejected():
    features, logits, labels = make_batch()
    with pytest.raises(ValueError, match="tags: expected shape"):
        make_loss()(features, logits, labels, tags=torch.zeros(2, 3), cls_logits=torch.zeros(2, 4))
    with pytest.raises(ValueError, match="valid_mask"):
        make_loss()(features, logits, labels, valid_mask=torch.ones(2, 16, 12))
    with pytest.raises(ValueError, match="distance must be one of"):
        AGMMLoss(in_channels=6, num_classes=K, distance="cosine")
    with pytest.raises(ValueError, match="con must be one of"):
        AGMMLoss(in_channels=6, num_classes=K, con="old")


def test_docstring_example_runs_on_torchvision_deeplab():
    """The usage example in AGMMLoss's docstring works as written."""
    doc = AGMMLoss.__doc__
    code = "\n".join(
        line[8:]
        for line in doc.split("::", 1)[1].split("\n\n    Args:")[0].splitlines()
        if line.strip()
    )
    images = torch.randn(2, 3, 64, 64)
    weak_labels = torch.full((2, 64, 64), 255)
    weak_labels[0, 10:14, 10:14] = 3
    weak_labels[1, 40, 50] = 15
    namespace = {"images": images, "weak_labels": weak_labels, "print": lambda *a: None}
    exec(compile(code, "AGMMLoss.__doc__", "exec"), namespace)
    assert torch.isfinite(namespace["out"]["loss"])
    assert set(namespace["out"]["terms"]) == {"seg", "self", "weak", "con", "cls"}


def test_self_term_over_all_classes_pushes_absent_classes_down():
    """self_classes="all": absent classes have G = 0, so BCE(P, 0) counts for them too."""
    features, logits, labels = make_batch()
    labels[1] = 255  # an image without labels teaches nothing in either mode
    labels[labels == 3] = 255  # class 3 absent from image 0
    criterion = make_loss(self_classes="all", self_resolution="label", oem_steps=0)
    out = criterion(features, logits, labels)
    fitted = criterion.fit_gmm(features, labels)
    g_up = F.interpolate(fitted["gmm_old"], size=(16, 12), mode="bilinear", align_corners=False)
    every_class = torch.tensor([[True] * K, [False] * K])
    expected = reference.self_loss(torch.softmax(logits, 1), g_up.detach(), every_class, None)
    assert out["terms"]["self"].item() == pytest.approx(expected, rel=1e-6)
    present_only = make_loss(self_resolution="label", oem_steps=0)(features, logits, labels)
    assert out["terms"]["self"].item() != pytest.approx(present_only["terms"]["self"].item())


def test_product_target_is_g_times_detached_p_normalised():
    """self_target="gmm_x_p": L_self's target is G_new x P over the present classes, P detached."""
    features, logits, labels = make_batch(seed=3)
    logits.requires_grad_(True)
    criterion = AGMMLoss(
        in_channels=6,
        num_classes=K,
        self_target="gmm_x_p",
        self_resolution="feature",
        self_pooling="probs",
    ).double()
    out = criterion(features, logits, labels)
    gmm = criterion.fit_gmm(features, labels)
    pooled = torch.nn.functional.adaptive_avg_pool2d(torch.softmax(logits, 1), features.shape[-2:])
    product = gmm["gmm_new"] * pooled * gmm["present"][:, :, None, None]
    expected_target = product / product.sum(1, keepdim=True)
    target = gmm_fn.product_target(
        gmm["new"].sq_dist, gmm["new"].sigma, gmm["present"], pooled.flatten(2)
    ).view_as(expected_target)
    has = gmm["present"].any(1)
    torch.testing.assert_close(target[has], expected_target[has])
    torch.testing.assert_close(out["self_target"], target)  # what the engine logs for Fig. 10
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all()


def test_class_prior_gives_unlabeled_image_classes_a_component():
    """class_prior_momentum: a class of the image with no label in the crop gets a component
    from the running class statistics, once that class has been seen in a batch."""
    features, logits, labels = make_batch(seed=4, density=0.3)
    criterion = AGMMLoss(in_channels=6, num_classes=K, class_prior_momentum=0.9).double()
    criterion.train()
    first = criterion(features, logits, labels)  # every class labeled somewhere: all seen
    assert criterion.prior_seen.all()
    labels_first = gmm_fn.pool_labels(labels, K, features.shape[-2:], dtype=torch.float64)
    assert torch.equal(first["present"], labels_first.sum(2) > 0)  # no image_classes: unchanged

    cropped = labels.clone()
    cropped[0][cropped[0] == 2] = 255  # image 0 contains class 2, but the crop lost its labels
    image_classes = torch.ones(2, K, dtype=torch.bool)
    out = criterion(features, logits, cropped, image_classes=image_classes)
    assert out["present"][0, 2]
    mu_prior = criterion.prior_mu[2].clone()  # fit_gmm in training mode updates the prior after use
    gmm = criterion.fit_gmm(features, cropped, image_classes=image_classes)
    assert not gmm["labeled"][0, 2] and gmm["present"][0, 2]
    torch.testing.assert_close(gmm["old"].mu[0, 2], mu_prior)
    assert torch.isfinite(out["loss"]) and out["gmm_old"][0, 2].max() > 0


def test_class_prior_is_an_ema_of_labeled_class_centres():
    features, logits, labels = make_batch(seed=5, density=0.3)
    criterion = AGMMLoss(in_channels=6, num_classes=K, class_prior_momentum=0.75).double()
    criterion.train()
    criterion(features, logits, labels)
    first = criterion.prior_mu.clone()
    gmm = criterion.fit_gmm(features, labels)  # training mode: this call updates once more
    weights = gmm["label_weights"]
    mass = weights.sum(2)
    batch_mu = torch.einsum("bk,bkc->kc", mass, gmm["old"].mu) / mass.sum(0)[:, None]
    torch.testing.assert_close(first, batch_mu)  # first sighting: the batch's centres
    torch.testing.assert_close(criterion.prior_mu, 0.75 * first + 0.25 * batch_mu)
    criterion.eval()
    before = criterion.prior_mu.clone()
    criterion(features, logits, labels)
    assert torch.equal(criterion.prior_mu, before)  # evaluation never moves the prior
    assert {"prior_mu", "prior_variance", "prior_seen"} <= set(criterion.state_dict())
    # without the option the module's state (and so every older checkpoint) has no such keys
    assert not any(k.startswith("prior_") for k in AGMMLoss(6, K).state_dict())
    AGMMLoss(6, K, embed_dim=64).load_state_dict(criterion.state_dict())  # unused keys: dropped


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("self_target", ["gmm", "gmm_x_p"])
def test_coarse_logits_give_the_same_loss_and_gradients(monkeypatch, padded, self_target):
    """L_self's cell means from the logits before the model's bilinear upsampling: the same loss
    and gradients as pooling the full-resolution logits (which padding still needs)."""
    import agmm.gmm.loss as loss_module

    calls = []
    original = loss_module.coarse_cell_means
    monkeypatch.setattr(
        loss_module, "coarse_cell_means", lambda *a: calls.append(1) or original(*a)
    )
    features, _, labels = make_batch(seed=3)
    coarse = torch.randn(
        2, K, 4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    valid = None
    if padded:
        valid = torch.ones(labels.shape, dtype=torch.bool)
        valid[1, :, -5:] = False

    def run(with_coarse):
        leaf = coarse.clone().requires_grad_()
        logits = F.interpolate(leaf, size=(16, 12), mode="bilinear", align_corners=False)
        out = make_loss(self_target=self_target)(
            features, logits, labels, valid_mask=valid, coarse_logits=leaf if with_coarse else None
        )
        out["loss"].backward()
        return out, leaf.grad

    (plain, plain_grad), (fast, fast_grad) = run(False), run(True)
    assert len(calls) == (0 if padded else 1)
    for name, value in plain["terms"].items():
        assert fast["terms"][name].item() == pytest.approx(value.item(), rel=1e-12, abs=1e-15)
    torch.testing.assert_close(fast_grad, plain_grad, rtol=1e-10, atol=1e-14)


def test_coarse_logits_of_the_wrong_grid_are_rejected():
    features, logits, labels = make_batch()
    with pytest.raises(ValueError, match=re.escape("coarse_logits: expected shape (2, 4, 4, 3)")):
        make_loss()(features, logits, labels, coarse_logits=torch.zeros(2, K, 8, 6))


@pytest.mark.parametrize(
    "values,dtype,expected",
    [
        ([0, 3, 255], torch.int64, None),
        ([255, 255], torch.int64, None),
        ([0, 1, 2, 3], torch.int64, None),
        ([0, 7, 255, 9], torch.int64, 7),  # between K and the unlabeled value: the smallest
        ([0, 300, 255], torch.int64, 300),  # above the unlabeled value
        ([2, -3, 255], torch.int64, -3),
        ([0, 5, 255], torch.uint8, 5),
        ([0, 3, 255], torch.uint8, None),
    ],
)
def test_bad_label_values_are_found(values, dtype, expected):
    from agmm.gmm.loss import _bad_label

    labels = torch.tensor(values, dtype=dtype).view(1, 1, -1)
    assert _bad_label(labels, K, 255) == expected


@pytest.mark.parametrize("use_gmm", [False, True])
def test_with_coarse_logits_no_gradient_reaches_the_full_resolution_logits(use_gmm):
    """Sparse labels: L_seg samples its labeled logits from ``coarse_logits`` (and L_self pools
    them), so the full-resolution logits need no gradient; the coarse ones get it all."""
    features, _, labels = make_batch(seed=4)
    coarse = torch.randn(2, K, 4, 3, dtype=torch.float64, requires_grad=True)
    logits = F.interpolate(coarse.detach(), size=(16, 12), mode="bilinear", align_corners=False)
    logits.requires_grad_()
    out = make_loss()(features, logits, labels, coarse_logits=coarse, use_gmm=use_gmm)
    out["loss"].backward()
    assert logits.grad is None
    assert coarse.grad is not None and coarse.grad.abs().sum() > 0
    expected = F.cross_entropy(logits.detach(), labels, ignore_index=255)
    assert out["terms"]["seg"].item() == pytest.approx(expected.item(), rel=1e-12)


def test_coarse_samples_for_l_seg_are_float32_under_bf16():
    features, _, labels = make_batch(seed=5)
    coarse = torch.randn(2, K, 4, 3, dtype=torch.float64)
    logits = F.interpolate(coarse, size=(16, 12), mode="bilinear", align_corners=False)
    criterion = make_loss().float()
    out = criterion(
        features.float(),
        logits.bfloat16(),
        labels,
        coarse_logits=coarse.bfloat16(),
        use_gmm=False,
    )
    expected = F.cross_entropy(
        F.interpolate(coarse.bfloat16().double(), size=(16, 12), mode="bilinear"),
        labels,
        ignore_index=255,
    )
    assert out["terms"]["seg"].dtype == torch.float32
    assert out["terms"]["seg"].item() == pytest.approx(expected.item(), rel=1e-5)
