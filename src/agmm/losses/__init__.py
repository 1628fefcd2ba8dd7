"""The loss terms of AGMM++ (Eq. 10-17) as pure functions."""

from agmm.losses.classification import classification_loss
from agmm.losses.contrastive import centre_contrastive_loss, contrastive_loss
from agmm.losses.gmm_terms import confident_cross_entropy, self_supervision_loss, weak_loss
from agmm.losses.segmentation import partial_cross_entropy

__all__ = [
    "centre_contrastive_loss",
    "classification_loss",
    "confident_cross_entropy",
    "contrastive_loss",
    "partial_cross_entropy",
    "self_supervision_loss",
    "weak_loss",
]
