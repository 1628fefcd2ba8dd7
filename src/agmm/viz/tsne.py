"""t-SNE of pixel features coloured by class (paper Fig. 11)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from agmm.viz.figures import new_figure, save_figure


def sample_pixel_features(
    features,
    labels,
    *,
    max_points: int = 2000,
    seed: int = 0,
    ignore_index: int = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """Picks up to ``max_points`` labeled pixels. Returns features (N, C) float32, labels (N,).

    features: (B, C, h, w) (or (C, h, w)); labels: (B, H, W) ids, nearest-resized to (h, w)
    (dense masks suit best: sparse clicks may fall between feature cells). Pixels are drawn
    uniformly without replacement with a fixed ``seed``.
    """
    features = torch.as_tensor(features).detach().float().cpu()
    labels = torch.as_tensor(labels).detach().cpu()
    if features.ndim == 3:
        features, labels = features[None], labels[None]
    if labels.shape[-2:] != features.shape[-2:]:
        labels = F.interpolate(labels[:, None].float(), size=features.shape[-2:], mode="nearest")
        labels = labels[:, 0].long()
    feats_nc = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
    labels_n = labels.reshape(-1)
    keep = torch.nonzero(labels_n != ignore_index).flatten().numpy()
    rng = np.random.default_rng(seed)
    if len(keep) > max_points:
        keep = np.sort(rng.choice(keep, size=max_points, replace=False))
    return feats_nc[keep].numpy(), labels_n[keep].numpy()


def tsne_embedding(
    features_nc: np.ndarray, *, seed: int = 0, num_threads: int | None = None
) -> np.ndarray:
    """2-D t-SNE (sklearn, PCA init) of features (N, C). Returns (N, 2).

    ``num_threads`` caps sklearn's OpenMP threads (on a busy machine, 1 is often much faster).
    """
    from sklearn.manifold import TSNE

    count = len(features_nc)
    if count < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {count}")
    perplexity = float(min(30.0, (count - 1) / 3))
    tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed)
    limit = nullcontext()
    if num_threads is not None:
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

        limit = threadpool_limits(limits=num_threads)
    with limit:
        return tsne.fit_transform(np.asarray(features_nc, dtype=np.float32))


def plot_tsne(
    features,
    labels,
    path: str | Path,
    *,
    palette: np.ndarray,
    classes: Sequence[str] | None = None,
    max_points: int = 2000,
    seed: int = 0,
    title: str | None = None,
    ignore_index: int = 255,
    num_threads: int | None = None,
) -> Path:
    """Saves a PNG scatter of the t-SNE of pixel ``features`` (B, C, h, w) coloured by ``labels``.

    At most ``max_points`` pixels (see :func:`sample_pixel_features`); colours from ``palette``
    (K, 3), legend from ``classes``; ``num_threads`` as in :func:`tsne_embedding`.
    """
    feats_nc, labels_n = sample_pixel_features(
        features, labels, max_points=max_points, seed=seed, ignore_index=ignore_index
    )
    points = tsne_embedding(feats_nc, seed=seed, num_threads=num_threads)
    palette = np.asarray(palette, dtype=np.float32) / 255.0
    fig = new_figure(6, 6)
    ax = fig.subplots()
    for k in np.unique(labels_n):
        chosen = labels_n == k
        name = classes[k] if classes is not None and k < len(classes) else str(k)
        ax.scatter(*points[chosen].T, s=6, color=palette[k], label=name, alpha=0.8, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"t-SNE of {len(labels_n)} pixel features")
    ax.legend(markerscale=3, fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, path)
