"""The GMM maths (Eq. 1-9, 18) against loop references, gradients, and invariants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from agmm.gmm import functional as gmm_fn
from tests.gmm import reference

DISTANCES = ["l1", "sqeuclid"]


def random_problem(
    seed=0, batch=2, classes=4, channels=5, size=(12, 10), cells=(4, 5), density=0.15
):
    """Random features (B, C, N) and sparse weak labels (B, H, W), float64."""
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, channels, cells[0] * cells[1], generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, (batch, *size), generator=gen)
    unlabeled = torch.rand(batch, *size, generator=gen) > density
    labels[unlabeled] = 255
    return feats, labels


def test_pool_labels_matches_pixel_loop():
    _, labels = random_problem(size=(13, 11), cells=(4, 3))
    expected = reference.pool_labels(labels, 4, (4, 3))
    actual = gmm_fn.pool_labels(labels, 4, (4, 3), dtype=torch.float64)
    torch.testing.assert_close(actual, expected)


def test_one_pixel_label_survives_pooling_at_stride_8():
    labels = torch.full((1, 64, 64), 255)
    labels[0, 37, 5] = 2  # a single click
    weights = gmm_fn.pool_labels(labels, 3, (8, 8), dtype=torch.float64)
    assert weights.sum() > 0
    assert weights[0, 2].nonzero().flatten().tolist() == [(37 // 8) * 8 + 5 // 8]


@pytest.mark.parametrize("kind", DISTANCES)
def test_squared_distance_matches_loop(kind):
    feats, _ = random_problem()
    mu = torch.randn(2, 4, 5, dtype=torch.float64)
    actual = gmm_fn.squared_distance(feats, mu, kind)
    for b in range(2):
        for k in range(4):
            for n in range(feats.shape[2]):
                assert actual[b, k, n].item() == pytest.approx(
                    reference.distance_sq(feats[b, :, n], mu[b, k], kind), rel=1e-9, abs=1e-12
                )


@pytest.mark.parametrize("kind", DISTANCES)
def test_channels_innermost_features_give_the_same_distances_and_gradients(kind):
    # The squeeze hands over (B, C, N) views of (B, N, C) memory; sqeuclid then takes another
    # route (position-major baddbmm), which must agree with the loop and keep gradients exact.
    feats, _ = random_problem()
    rows = feats.transpose(1, 2).contiguous().transpose(1, 2)  # same values, channels innermost
    assert rows.stride(1) == 1
    mu = torch.randn(2, 4, 5, dtype=torch.float64)
    actual = gmm_fn.squared_distance(rows, mu, kind)
    if kind == "sqeuclid":  # copied back to (B, K, N): what follows runs on contiguous maps
        assert actual.is_contiguous()
    torch.testing.assert_close(
        actual, gmm_fn.squared_distance(feats, mu, kind), rtol=1e-12, atol=1e-12
    )
    for b, k, n in [(0, 0, 0), (1, 3, 19), (0, 2, 7)]:
        assert actual[b, k, n].item() == pytest.approx(
            reference.distance_sq(feats[b, :, n], mu[b, k], kind), rel=1e-9, abs=1e-12
        )
    small = torch.randn(2, 4, 3, dtype=torch.float64).transpose(1, 2).requires_grad_()
    centres = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda f, m: gmm_fn.squared_distance(f, m, kind), (small, centres), eps=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("kind", DISTANCES)
def test_e_step_matches_reference(kind):
    feats, labels = random_problem(seed=1)
    weights = gmm_fn.pool_labels(labels, 4, (4, 5), dtype=torch.float64)
    present = weights.sum(2) > 0
    fitted = gmm_fn.fit_components(feats, weights, present, distance=kind, sigma_floor=0.05)
    mu, sigma, g = reference.fit(feats, weights, present, kind, 0.05)
    torch.testing.assert_close(fitted.mu, mu)
    torch.testing.assert_close(fitted.sigma, sigma)
    torch.testing.assert_close(fitted.probs, g)


@pytest.mark.parametrize("kind", DISTANCES)
@pytest.mark.parametrize("responsibilities", ["soft", "hard"])
def test_m_steps_match_reference(kind, responsibilities):
    feats, labels = random_problem(seed=2)
    weights = gmm_fn.pool_labels(labels, 4, (4, 5), dtype=torch.float64)
    present = weights.sum(2) > 0
    present[1, 0] = False  # an image where a class is absent
    weights[1, 0] = 0
    valid = torch.ones(2, 20, dtype=torch.float64)
    valid[0, -3:] = 0  # padding cells
    old, new = gmm_fn.online_em(
        feats,
        weights,
        present,
        valid_weights=valid,
        steps=2,
        responsibilities=responsibilities,
        distance=kind,
        sigma_floor=0.05,
    )
    mu, sigma, g = reference.fit(feats, weights, present, kind, 0.05)
    torch.testing.assert_close(old.probs, g)
    for _ in range(2):
        resp = reference.m_step_responsibilities(g, present, responsibilities) * valid[:, None]
        mu, sigma, g = reference.fit(feats, resp, present, kind, 0.05, previous=(mu, sigma))
    torch.testing.assert_close(new.mu, mu)
    torch.testing.assert_close(new.sigma, sigma)
    torch.testing.assert_close(new.probs, g)


def test_zero_oem_steps_returns_the_e_step():
    feats, labels = random_problem()
    weights = gmm_fn.pool_labels(labels, 4, (4, 5), dtype=torch.float64)
    old, new = gmm_fn.online_em(feats, weights, weights.sum(2) > 0, steps=0)
    assert new is old


def test_assign_labels_matches_eq18_loop():
    feats, labels = random_problem(seed=3)
    weights = gmm_fn.pool_labels(labels, 4, (4, 5), dtype=torch.float64)
    present = weights.sum(2) > 0
    fitted = gmm_fn.fit_components(feats, weights, present, sigma_floor=0.05)
    expected = reference.assign(fitted.sq_dist, fitted.sigma, present)
    actual = gmm_fn.assign_labels(fitted.sq_dist, fitted.sigma, present)
    assert torch.equal(actual, expected)
    assert (actual != 255).any()


@pytest.mark.parametrize("kind", DISTANCES)
@pytest.mark.parametrize("responsibilities", ["soft", "hard"])
def test_gradcheck_through_oem(kind, responsibilities):
    gen = torch.Generator().manual_seed(4)
    feats = torch.randn(1, 3, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    # Spread label mass over several cells so that no centre coincides with a feature (|x| at 0).
    weights = torch.rand(1, 2, 6, generator=gen, dtype=torch.float64) * (
        torch.rand(1, 2, 6, generator=gen) > 0.3
    )
    weights[0, :, 0] = 0.5
    present = torch.tensor([[True, True]])

    def run(f):
        old, new = gmm_fn.online_em(
            f,
            weights,
            present,
            steps=1,
            distance=kind,
            responsibilities=responsibilities,
            sigma_floor=1e-3,
        )
        return old.probs, new.probs, new.mu, new.sigma

    assert torch.autograd.gradcheck(run, (feats,), eps=1e-6, atol=1e-5)


def test_gradients_reach_features_through_the_gmm():
    feats, labels = random_problem()
    feats.requires_grad_(True)
    weights = gmm_fn.pool_labels(labels, 4, (4, 5), dtype=torch.float64)
    _, new = gmm_fn.online_em(feats, weights, weights.sum(2) > 0, steps=1)
    new.probs.sum().backward()
    assert feats.grad.abs().sum() > 0


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    classes=st.integers(1, 5),
    density=st.sampled_from([0.0, 0.002, 0.05, 0.5, 1.0]),
    kind=st.sampled_from(DISTANCES),
    responsibilities=st.sampled_from(["soft", "hard"]),
    steps=st.integers(0, 2),
)
def test_gmm_is_finite_and_in_unit_interval(seed, classes, density, kind, responsibilities, steps):
    """Holds for empty images, one-pixel classes, a single class and fully labeled images."""
    feats, labels = random_problem(seed=seed, classes=classes, density=density)
    weights = gmm_fn.pool_labels(labels, classes, (4, 5), dtype=torch.float64)
    present = weights.sum(2) > 0
    old, new = gmm_fn.online_em(
        feats, weights, present, steps=steps, distance=kind, responsibilities=responsibilities
    )
    for params in (old, new):
        assert torch.isfinite(params.probs).all() and torch.isfinite(params.sigma).all()
        assert params.probs.min() >= 0 and params.probs.max() <= 1
        assert (params.probs[~present] == 0).all()  # absent classes get G = 0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(DISTANCES))
def test_permuting_class_ids_permutes_the_output(seed, kind):
    feats, labels = random_problem(seed=seed, density=0.3)
    perm = torch.randperm(4, generator=torch.Generator().manual_seed(seed))
    relabeled = labels.clone()
    labeled = labels != 255
    relabeled[labeled] = perm[labels[labeled]]
    outs = []
    for lab in (labels, relabeled):
        weights = gmm_fn.pool_labels(lab, 4, (4, 5), dtype=torch.float64)
        outs.append(gmm_fn.online_em(feats, weights, weights.sum(2) > 0, steps=1, distance=kind)[1])
    # class perm[k] after relabeling is class k before
    torch.testing.assert_close(outs[1].probs[:, perm], outs[0].probs)
    torch.testing.assert_close(outs[1].mu[:, perm], outs[0].mu)


def test_one_pixel_label_moves_its_centre():
    """A single clicked pixel at input resolution changes mu of its class (no label is lost)."""
    feats = torch.randn(1, 4, 16, dtype=torch.float64)
    labels = torch.full((1, 32, 32), 255)
    labels[0, 0:16, 0:16] = 0  # a block of class 0
    before = gmm_fn.pool_labels(labels, 2, (4, 4), dtype=torch.float64)
    labels[0, 29, 30] = 0  # one more click of class 0, far away
    after = gmm_fn.pool_labels(labels, 2, (4, 4), dtype=torch.float64)
    mu_before = gmm_fn.fit_components(feats, before, before.sum(2) > 0).mu
    mu_after = gmm_fn.fit_components(feats, after, after.sum(2) > 0).mu
    assert not torch.allclose(mu_before[0, 0], mu_after[0, 0])


def test_one_pixel_class_has_floored_sigma_and_peaks_at_its_pixel():
    feats = torch.randn(1, 4, 16, dtype=torch.float64)
    labels = torch.full((1, 16, 16), 255)
    labels[0, 5, 9] = 1
    weights = gmm_fn.pool_labels(labels, 2, (4, 4), dtype=torch.float64)
    fitted = gmm_fn.fit_components(feats, weights, weights.sum(2) > 0, sigma_floor=0.1)
    assert fitted.sigma[0, 1].item() == pytest.approx(0.1)
    cell = (5 // 4) * 4 + 9 // 4
    assert fitted.probs[0, 1, cell].item() == pytest.approx(1.0)
    assert (fitted.probs[0, 0] == 0).all()


def test_unknown_distance_is_rejected():
    with pytest.raises(ValueError, match="distance must be one of"):
        gmm_fn.squared_distance(torch.zeros(1, 2, 3), torch.zeros(1, 1, 2), "cosine")


@pytest.mark.parametrize("image_size", [(16, 12), (13, 11), (32, 8)])
def test_sample_at_pixels_equals_bilinear_upsampling(image_size):
    grid = torch.rand(2, 3, 4, 3, dtype=torch.float64)
    full = F.interpolate(grid, size=image_size, mode="bilinear", align_corners=False)
    b, y, x = torch.ones(2, *image_size, dtype=torch.bool).nonzero(as_tuple=True)
    sampled = gmm_fn.sample_at_pixels(grid, b, y, x, image_size)
    torch.testing.assert_close(sampled, full[b, :, y, x])


@pytest.mark.parametrize("kind", DISTANCES)
def test_posteriors_normalise_g_over_present_classes(kind):
    feats, labels = random_problem(seed=5)
    labels[1] = 255  # an image with no component at all
    weights = gmm_fn.pool_labels(labels, 4, (4, 5), dtype=torch.float64)
    present = weights.sum(2) > 0
    plain = gmm_fn.fit_components(feats, weights, present, distance=kind)
    post = gmm_fn.fit_components(feats, weights, present, distance=kind, posterior=True)
    expected = plain.probs[0] / plain.probs[0].sum(0, keepdim=True)
    torch.testing.assert_close(post.probs[0], expected)
    assert (post.probs[1] == 0).all() and torch.isfinite(post.probs).all()
    far = gmm_fn.gmm_posteriors(plain.sq_dist * 1e6, plain.sigma, present)  # every g_k underflows
    torch.testing.assert_close(far[0].sum(0), torch.ones(20, dtype=torch.float64))


@pytest.mark.parametrize("kind", DISTANCES)
def test_sigma_prior_matches_reference(kind):
    feats, labels = random_problem(seed=6)
    weights = gmm_fn.pool_labels(labels, 4, (4, 5), dtype=torch.float64)
    present = weights.sum(2) > 0
    present[1, 2] = False  # a class without a component does not enter the pooled variance
    fitted = gmm_fn.fit_components(feats, weights, present, distance=kind, prior_mass=0.7)
    mu, sigma, g = reference.fit(feats, weights, present, kind, 0.05, prior_mass=0.7)
    torch.testing.assert_close(fitted.sigma, sigma)
    torch.testing.assert_close(fitted.probs, g)


def test_sigma_prior_pulls_a_few_pixel_class_toward_the_pooled_spread():
    """A one-pixel class has sigma at the floor alone; with the prior it gets the image's spread."""
    feats, labels = random_problem(seed=7, density=0.4)
    labels[0][labels[0] == 3] = 255
    labels[0, 0, 0] = 3  # class 3: one pixel
    weights = gmm_fn.pool_labels(labels, 4, (4, 5), dtype=torch.float64)
    present = weights.sum(2) > 0
    plain = gmm_fn.fit_components(feats, weights, present, distance="sqeuclid")
    shrunk = gmm_fn.fit_components(feats, weights, present, distance="sqeuclid", prior_mass=1e6)
    assert plain.sigma[0, 3] == pytest.approx(0.05)
    pooled = (weights[0] * plain.sq_dist[0]).sum() / weights[0].sum()
    torch.testing.assert_close(shrunk.sigma[0, :3], pooled.sqrt().expand(3), rtol=1e-4, atol=0)
    assert shrunk.sigma[0, 3] > 10 * plain.sigma[0, 3]


@pytest.mark.parametrize("kind", DISTANCES)
def test_product_target_matches_reference_and_stays_finite(kind):
    feats, labels = random_problem(seed=8)
    labels[1] = 255  # an image without components: all zeros
    weights = gmm_fn.pool_labels(labels, 4, (4, 5), dtype=torch.float64)
    present = weights.sum(2) > 0
    fitted = gmm_fn.fit_components(feats, weights, present, distance=kind)
    probs = torch.softmax(torch.randn(2, 4, 20, dtype=torch.float64), dim=1)
    target = gmm_fn.product_target(fitted.sq_dist, fitted.sigma, present, probs)
    torch.testing.assert_close(
        target[0], reference.product_target(fitted.sq_dist, fitted.sigma, present, probs)[0]
    )
    assert (target[1] == 0).all()
    far = gmm_fn.product_target(fitted.sq_dist * 1e6, fitted.sigma, present, probs)
    assert torch.isfinite(far).all()
    torch.testing.assert_close(far[0].sum(0), torch.ones(20, dtype=torch.float64))
    # within=True: the same split of P's own mass on the present classes
    within = gmm_fn.product_target(fitted.sq_dist, fitted.sigma, present, probs, within=True)
    present_mass = (probs[0] * present[0, :, None]).sum(0)
    torch.testing.assert_close(within[0], target[0] * present_mass)
    torch.testing.assert_close(within[0].sum(0), present_mass)


@pytest.mark.parametrize("posterior", [False, True])
@pytest.mark.parametrize("image_size", [(16, 20), (13, 11)])
def test_gmm_at_pixels_equals_sampling_the_map_of_g(posterior, image_size):
    """L_weak's G at the labeled pixels, evaluated at their four cells only: the values and the
    gradients of bilinear samples of the whole map, absent classes 0."""
    feats, labels = random_problem(seed=9, size=image_size)
    labels[1][labels[1] == 2] = 255  # class 2 absent from image 1
    feats.requires_grad_()
    weights = gmm_fn.pool_labels(labels, 4, (4, 5), dtype=torch.float64)
    present = weights.sum(2) > 0
    b, y, x = (labels != 255).nonzero(as_tuple=True)
    coeffs = torch.randn(len(b), 4, dtype=torch.float64)

    def both(f):
        fitted = gmm_fn.fit_components(
            f, weights, present, distance="sqeuclid", posterior=posterior
        )
        grid = fitted.probs.view(2, 4, 4, 5)
        return (
            gmm_fn.gmm_at_pixels(fitted, b, y, x, (4, 5), image_size, posterior=posterior),
            gmm_fn.sample_at_pixels(grid, b, y, x, image_size),
        )

    direct, sampled = both(feats)
    torch.testing.assert_close(direct, sampled, rtol=1e-12, atol=1e-12)
    assert (direct[b == 1][:, 2] == 0).all()
    grads = [
        torch.autograd.grad((v * coeffs).sum(), feats, retain_graph=True)[0] for v in both(feats)
    ]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_log_gaussians_are_minus_inf_for_absent_classes_with_finite_gradients():
    sq_dist = torch.rand(2, 3, 5, dtype=torch.float64, requires_grad=True)
    sigma = torch.rand(2, 3, dtype=torch.float64).add(0.1).requires_grad_()
    present = torch.tensor([[True, False, True], [False, False, True]])
    log_g = gmm_fn.log_gaussians(sq_dist, sigma, present)
    expected = -sq_dist / (2 * sigma[:, :, None] ** 2)
    torch.testing.assert_close(log_g[present], expected[present])
    assert torch.isneginf(log_g[~present]).all()
    gmm_fn.gmm_probabilities(sq_dist, sigma, present).sum().backward()
    assert torch.isfinite(sq_dist.grad).all() and torch.isfinite(sigma.grad).all()
    assert (sq_dist.grad[~present] == 0).all() and (sigma.grad[~present] == 0).all()
    assert torch.autograd.gradcheck(
        lambda d, s: gmm_fn.gmm_probabilities(d, s, present), (sq_dist, sigma)
    )


def _moments_written_out(rows, resp):
    """mu, d^2, mass and scatter of a sqeuclid fit, written out with autograd (float64)."""
    mass = resp.sum(dim=2)
    mu = torch.bmm(resp, rows) / mass.clamp_min(1e-8).unsqueeze(2)
    diff = rows.unsqueeze(1) - mu.unsqueeze(2)  # (B, K, N, C)
    sq_dist = diff.pow(2).mean(dim=3)
    return mu, sq_dist, mass, (resp * sq_dist).sum(dim=2)


def test_sqeuclid_moments_match_autograd_with_empty_classes():
    gen = torch.Generator().manual_seed(11)
    rows = torch.randn(2, 9, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    resp = torch.rand(2, 3, 9, generator=gen, dtype=torch.float64)
    resp[0, 1] = 0.0  # an empty class: mass floored, mu = 0
    resp[1, 2, 1:] = 0.0  # a one-cell class: d^2 = 0 there
    resp.requires_grad_()
    fused = gmm_fn._SqEuclidMoments.apply(rows, resp)
    plain = _moments_written_out(rows, resp)
    for a, b in zip(fused, plain, strict=True):
        torch.testing.assert_close(a, b)
    upstream = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in plain]
    for pick in ([0, 1, 2, 3], [1], [3], [0, 2]):  # every output, and some left unused
        grads = [
            torch.autograd.grad(sum((out[i] * upstream[i]).sum() for i in pick), (rows, resp))
            for out in (gmm_fn._SqEuclidMoments.apply(rows, resp), _moments_written_out(rows, resp))
        ]
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b)


def test_sqeuclid_moments_gradcheck():
    gen = torch.Generator().manual_seed(12)
    rows = torch.randn(2, 7, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    resp = (torch.rand(2, 3, 7, generator=gen, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(gmm_fn._SqEuclidMoments.apply, (rows, resp))


@pytest.mark.parametrize("within", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_product_target_bce_matches_the_two_steps(within, weighted):
    from agmm.losses import self_supervision_loss

    gen = torch.Generator().manual_seed(13)
    batch, classes, positions = 3, 4, 10
    probs = torch.softmax(torch.randn(batch, classes, positions, generator=gen), dim=1)
    probs = probs.double().requires_grad_()
    sq_dist = (torch.rand(batch, classes, positions, generator=gen) * 3).double().requires_grad_()
    sigma = (torch.rand(batch, classes, generator=gen) + 0.2).double().requires_grad_()
    present = torch.rand(batch, classes, generator=gen) > 0.3
    present[0, 0] = True
    present[2] = False  # an image without components: target 0, no pair counted
    weights = torch.rand(batch, positions, generator=gen).double() if weighted else None

    loss, target = gmm_fn.product_target_bce(probs, sq_dist, sigma, present, weights, within=within)
    expected_target = gmm_fn.product_target(sq_dist, sigma, present, probs, within=within)
    expected = self_supervision_loss(
        probs.unsqueeze(3),
        expected_target.unsqueeze(3),
        present,
        None if weights is None else weights.unsqueeze(2),
    )
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(target, expected_target.detach())
    assert not target.requires_grad
    inputs = (probs, sq_dist, sigma)
    for a, b in zip(
        torch.autograd.grad(loss, inputs), torch.autograd.grad(expected, inputs), strict=True
    ):
        torch.testing.assert_close(a, b)
    # P is fixed inside the target, so the check perturbs d^2 and sigma only
    assert torch.autograd.gradcheck(
        lambda d, s: gmm_fn.product_target_bce(
            probs.detach(), d, s, present, weights, within=within
        )[0],
        (sq_dist, sigma),
    )


def test_weak_bce_at_pixels_matches_the_written_out_form():
    from agmm.losses import weak_loss

    gen = torch.Generator().manual_seed(14)
    batch, classes, grid, image = 3, 5, (4, 5), (16, 20)
    sq_dist = (torch.rand(batch, classes, 20, generator=gen) * 4).double().requires_grad_()
    sigma = (torch.rand(batch, classes, generator=gen) + 0.3).double().requires_grad_()
    labels = torch.randint(0, classes, (batch, *image), generator=gen)
    labels[torch.rand(batch, *image, generator=gen) > 0.1] = 255
    labels[2] = 255
    labels[2, 0, 0] = 1  # an image with one click (at the border)
    weights = gmm_fn.pool_labels(labels, classes, grid, dtype=torch.float64)
    present = weights.sum(dim=2) > 0
    present[0, 4] = True  # a component without a labeled pixel in the crop
    pixels = (labels != 255).nonzero(as_tuple=True)
    ids = labels[pixels]
    fitted = gmm_fn.GMMParams(None, sigma, None, sq_dist, present)
    rows = gmm_fn.position_rows(sq_dist)

    def fused(rows, sigma):
        return gmm_fn.weak_bce_at_pixels(rows, sigma, present, pixels, ids, grid, image)

    def written(rows, sigma):
        fit = fitted._replace(sigma=sigma)
        g = gmm_fn.gmm_at_pixels(fit, *pixels, grid, image, sq_dist_rows=rows)
        return weak_loss(g, ids, present[pixels[0]])

    torch.testing.assert_close(fused(rows, sigma), written(rows, sigma))
    for a, b in zip(
        torch.autograd.grad(fused(rows, sigma), (sq_dist, sigma)),
        torch.autograd.grad(written(rows, sigma), (sq_dist, sigma)),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(fused, (rows.detach().requires_grad_(), sigma))
