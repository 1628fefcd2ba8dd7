"""Plain loop-based float64 implementations of Eq. 1-18, written straight from the paper.

Slow on purpose: one class, one pixel at a time, so that a reader can check each line against the
equations. The vectorised library code is tested against these.
"""

from __future__ import annotations

import math

import torch


def pool_labels(weak_labels, num_classes, feature_size, ignore_index=255):
    batch, height, width = weak_labels.shape
    cells_h, cells_w = feature_size
    out = torch.zeros(batch, num_classes, cells_h * cells_w, dtype=torch.float64)
    cell_area = height * width / (cells_h * cells_w)
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                k = int(weak_labels[b, y, x])
                if k == ignore_index:
                    continue
                cy, cx = (y * cells_h) // height, (x * cells_w) // width
                out[b, k, cy * cells_w + cx] += 1.0 / cell_area
    return out


def distance_sq(f, mu, kind):
    """d^2 of one feature vector f (C,) to one centre mu (C,)."""
    channels = f.shape[0]
    if kind == "l1":
        return (sum(abs(float(f[c]) - float(mu[c])) for c in range(channels)) / channels) ** 2
    return sum((float(f[c]) - float(mu[c])) ** 2 for c in range(channels)) / channels


def fit(feats, resp, present, kind, sigma_floor, prior_mass=0.0, previous=None):
    """feats (B, C, N), resp (B, K, N) -> mu (B, K, C), sigma (B, K), G (B, K, N).

    ``prior_mass`` > 0: each variance is shrunk toward the image's pooled variance (all present
    classes' weighted squared distances over all their weights), worth ``prior_mass`` of weight.
    ``previous`` = (mu, sigma) of the last fit (M-steps): a present class with no responsibility
    keeps those.
    """
    batch, channels, n = feats.shape
    k_all = resp.shape[1]
    mu = torch.zeros(batch, k_all, channels, dtype=torch.float64)
    sigma = torch.zeros(batch, k_all, dtype=torch.float64)
    g = torch.zeros(batch, k_all, n, dtype=torch.float64)
    for b in range(batch):
        masses, scatters = [0.0] * k_all, [0.0] * k_all
        for k in range(k_all):
            masses[k] = float(resp[b, k].sum())
            if masses[k] > 0:
                mu[b, k] = sum(resp[b, k, i] * feats[b, :, i] for i in range(n)) / masses[k]
                scatters[k] = sum(
                    float(resp[b, k, i]) * distance_sq(feats[b, :, i], mu[b, k], kind)
                    for i in range(n)
                )
        kept = [k for k in range(k_all) if present[b, k]]
        pooled_mass = sum(masses[k] for k in kept)
        pooled = sum(scatters[k] for k in kept) / pooled_mass if pooled_mass > 0 else 0.0
        for k in range(k_all):
            if prior_mass > 0:
                var = (scatters[k] + prior_mass * pooled) / (masses[k] + prior_mass)
            else:
                var = scatters[k] / masses[k] if masses[k] > 0 else 0.0
            sigma[b, k] = math.sqrt(max(var, sigma_floor**2))
            if not present[b, k]:
                continue
            if previous is not None and masses[k] == 0:
                mu[b, k], sigma[b, k] = previous[0][b, k], previous[1][b, k]
            for i in range(n):
                d2 = distance_sq(feats[b, :, i], mu[b, k], kind)
                g[b, k, i] = math.exp(-d2 / (2 * float(sigma[b, k]) ** 2))
    return mu, sigma, g


def m_step_responsibilities(g, present, kind):
    if kind == "soft":
        return g.clone()
    out = torch.zeros_like(g)
    batch, k_all, n = g.shape
    for b in range(batch):
        if not present[b].any():
            continue
        for i in range(n):
            best, best_k = -1.0, None
            for k in range(k_all):
                if present[b, k] and float(g[b, k, i]) > best:
                    best, best_k = float(g[b, k, i]), k
            out[b, best_k, i] = 1.0
    return out


def bce(p, t):
    return -(t * math.log(p + 1e-6) + (1 - t) * math.log(1 - p + 1e-6))


def self_loss(probs, g, present, weights):
    """Weighted mean of BCE(P, G) over positions (weights (B, h, w)) and present classes."""
    batch, k_all, height, width = probs.shape
    total, count = 0.0, 0.0
    for b in range(batch):
        for k in range(k_all):
            if not present[b, k]:
                continue
            for y in range(height):
                for x in range(width):
                    w = 1.0 if weights is None else float(weights[b, y, x])
                    total += w * bce(float(probs[b, k, y, x]), float(g[b, k, y, x]))
                    count += w
    return total / max(count, 1)


def self_loss_class(probs, g, present, weights):
    """Class-balanced L_self: per (image, present class), G-weighted mean of -log P and
    (1 - G)-weighted mean of -log(1 - P), averaged; then the mean over those pairs."""
    batch, k_all, height, width = probs.shape
    total, pairs = 0.0, 0
    for b in range(batch):
        for k in range(k_all):
            if not present[b, k]:
                continue
            pos, pos_w, neg, neg_w = 0.0, 0.0, 0.0, 0.0
            for y in range(height):
                for x in range(width):
                    w = 1.0 if weights is None else float(weights[b, y, x])
                    p, t = float(probs[b, k, y, x]), float(g[b, k, y, x])
                    pos += w * t * -math.log(p + 1e-6)
                    pos_w += w * t
                    neg += w * (1 - t) * -math.log(1 - p + 1e-6)
                    neg_w += w * (1 - t)
            total += 0.5 * (pos / max(pos_w, 1e-6) + neg / max(neg_w, 1e-6))
            pairs += 1
    return total / max(pairs, 1)


def confident_ce(probs, target, present, weights, threshold, reduction):
    """Cross-entropy of P on the target's arg-max over present classes, where that max >= threshold;
    ``pixel``: weighted mean over those positions, ``class``: mean of per-class weighted means."""
    batch, k_all, height, width = probs.shape
    sums, counts = [0.0] * k_all, [0.0] * k_all
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                best, label = 0.0, None
                for k in range(k_all):
                    if present[b, k] and float(target[b, k, y, x]) > best:
                        best, label = float(target[b, k, y, x]), k
                if label is None or best < threshold:
                    continue
                w = 1.0 if weights is None else float(weights[b, y, x])
                sums[label] += w * -math.log(float(probs[b, label, y, x]) + 1e-6)
                counts[label] += w
    if reduction == "pixel":
        return sum(sums) / max(sum(counts), 1e-6)
    means = [sums[k] / counts[k] for k in range(k_all) if counts[k] > 0]
    return sum(means) / max(len(means), 1)


def seg_loss_class(logits, labels, ignore_index=255):
    """Class-balanced partial cross-entropy: the mean over labeled classes of each class's mean."""
    sums, counts = {}, {}
    batch, _, height, width = logits.shape
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                label = int(labels[b, y, x])
                if label == ignore_index:
                    continue
                column = [float(v) for v in logits[b, :, y, x]]
                top = max(column)
                log_z = top + math.log(sum(math.exp(v - top) for v in column))
                sums[label] = sums.get(label, 0.0) + log_z - column[label]
                counts[label] = counts.get(label, 0) + 1
    if not sums:
        return 0.0
    return sum(sums[k] / counts[k] for k in sums) / len(sums)


def weak_loss(g_up, labels, present, ignore_index=255):
    batch, k_all, height, width = g_up.shape
    total, count = 0.0, 0
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                label = int(labels[b, y, x])
                if label == ignore_index:
                    continue
                for k in range(k_all):
                    if present[b, k]:
                        total += bce(float(g_up[b, k, y, x]), 1.0 if k == label else 0.0)
                        count += 1
    return total / max(count, 1)


def contrastive_eq14(sq_dist, label_weights, present):
    batch, k_all, n = sq_dist.shape
    pos, pos_n, neg, neg_n = 0.0, 0.0, 0.0, 0.0
    for b in range(batch):
        for i in range(n):
            for k in range(k_all):
                w = float(label_weights[b, k, i])
                if w == 0:
                    continue
                pos += w * (1 - math.exp(-float(sq_dist[b, k, i])))
                pos_n += w
                for j in range(k_all):
                    if j != k and present[b, j]:
                        neg += w * math.exp(-float(sq_dist[b, j, i]))
                        neg_n += w
    return pos / max(pos_n, 1e-8) + neg / max(neg_n, 1e-8)


def contrastive_eq13(mu, present, kind):
    batch, k_all, _ = mu.shape
    values = []
    for b in range(batch):
        ks = [k for k in range(k_all) if present[b, k]]
        if not ks:
            continue
        total = sum(
            math.exp(-distance_sq(mu[b, i], mu[b, j], kind)) for i in ks for j in ks if i != j
        )
        values.append(total * 2 / (len(ks) * (len(ks) + 1)))
    return sum(values) / max(len(values), 1)


def assign(sq_dist, sigma, present, ignore_index=255):
    batch, k_all, n = sq_dist.shape
    out = torch.full((batch, n), ignore_index, dtype=torch.long)
    for b in range(batch):
        for i in range(n):
            inside = [
                k for k in range(k_all) if present[b, k] and sq_dist[b, k, i] < sigma[b, k] ** 2
            ]
            if len(inside) == 1:
                out[b, i] = inside[0]
    return out


def product_target(sq_dist, sigma, present, probs):
    """G x P normalised over the present classes, one position at a time: (B, K, N)."""
    out = torch.zeros_like(sq_dist)
    batch, k_all, n = sq_dist.shape
    for b in range(batch):
        kept = [k for k in range(k_all) if present[b, k]]
        for i in range(n):
            scores = {
                k: math.exp(-float(sq_dist[b, k, i]) / (2 * float(sigma[b, k]) ** 2))
                * float(probs[b, k, i])
                for k in kept
            }
            total = sum(scores.values())
            for k in kept:
                out[b, k, i] = scores[k] / total
    return out
