"""The AGMM++ GMM module: pure functions (``functional``) and the drop-in ``AGMMLoss``."""

from agmm.gmm.functional import GMMParams, online_em, pool_labels, squared_distance
from agmm.gmm.loss import AGMMLoss

__all__ = ["AGMMLoss", "GMMParams", "online_em", "pool_labels", "squared_distance"]
