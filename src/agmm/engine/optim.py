"""Optimiser and learning-rate schedule of the paper's recipe.

DeepLabV3+: SGD, momentum 0.9, lr 1e-3 with 10x on the new layers, poly decay with power 0.9.
ViT: AdamW, lr 6e-5, weight decay 0.01, same poly decay.
"""

from __future__ import annotations

import torch
from torch import nn

from agmm.config import TrainConfig


def build_optimizer(
    model: nn.Module, loss_module: nn.Module, cfg: TrainConfig
) -> torch.optim.Optimizer:
    """Parameter groups with ``lr = cfg.lr * lr_mult``: backbone 1x, new layers and the GMM's
    squeeze conv ``cfg.head_lr_mult``x. Each group keeps its ``lr_mult`` for reference."""
    groups = [
        g for g in model.parameter_groups(head_lr_mult=cfg.head_lr_mult) if len(list(g["params"]))
    ]
    gmm_params = [p for p in loss_module.parameters() if p.requires_grad]
    if gmm_params:
        groups.append({"params": gmm_params, "lr_mult": cfg.head_lr_mult})
    for group in groups:
        group["params"] = list(group["params"])
        group["lr"] = cfg.lr * group["lr_mult"]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def poly_factor(step: int, *, total_steps: int, power: float, warmup_steps: int = 0) -> float:
    """lr factor at ``step``: linear warm-up, then ``(1 - step / total_steps) ** power``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, 1.0 - step / total_steps) ** power


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """Poly schedule over ``cfg.steps`` steps (stepped once per optimiser step)."""

    def factor(step: int) -> float:
        return poly_factor(
            step, total_steps=cfg.steps, power=cfg.poly_power, warmup_steps=cfg.warmup_steps
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
