"""The GMM module of a run: built from its config, or read back from its checkpoint."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from agmm.config import Config
from agmm.gmm.loss import AGMMLoss
from agmm.runtime.checkpoint import load_checkpoint, load_state_dict_checked


def build_loss(cfg: Config, model: nn.Module, num_classes: int) -> AGMMLoss:
    """``AGMMLoss`` on the model's decoder features, with the keyword arguments of ``cfg.loss``."""
    return AGMMLoss(
        in_channels=model.feature_channels, num_classes=num_classes, **cfg.loss.loss_kwargs()
    )


def load_gmm_module(checkpoint: str | Path, cfg, model: nn.Module, *, device=None):
    """The checkpoint's GMM module (``AGMMLoss`` with its trained squeeze conv), in eval mode.

    ``cfg``, ``model``: as returned by ``agmm.models.build.load_model(checkpoint)``.
    Returns None when the run trained without the GMM (``loss.enabled=false``).
    """
    state = load_checkpoint(checkpoint)
    if not state.get("loss_module") or not getattr(cfg.loss, "enabled", True):
        return None
    loss_module = build_loss(cfg, model, int(state["num_classes"]))
    load_state_dict_checked(loss_module, state["loss_module"], checkpoint, "GMM module")
    return loss_module.to(device or "cpu").eval()
