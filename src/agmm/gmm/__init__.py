"""The AGMM++ GMM module: pure functions (``functional``) and the drop-in ``AGMMLoss``
(``build_loss(cfg, model, K)`` from a run's config, ``load_gmm_module`` from its checkpoint)."""

from agmm.gmm.build import build_loss, load_gmm_module
from agmm.gmm.functional import GMMParams, online_em, pool_labels, squared_distance
from agmm.gmm.loss import AGMMLoss

__all__ = [
    "AGMMLoss",
    "GMMParams",
    "build_loss",
    "load_gmm_module",
    "online_em",
    "pool_labels",
    "squared_distance",
]
