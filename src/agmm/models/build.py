"""The segmenter of a run: built from its config, or rebuilt from its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agmm.config import Config
from agmm.data.palette import voc_palette
from agmm.errors import CheckpointError
from agmm.models.registry import build_model
from agmm.runtime.checkpoint import config_of, load_checkpoint, load_state_dict_checked


def build_segmenter(
    cfg: Config, num_classes: int, *, pretrained: bool | str | None = None
) -> nn.Module:
    """The segmenter of ``cfg.model`` for ``num_classes`` classes (``pretrained`` overrides the config)."""
    return build_model(
        cfg.model.name,
        num_classes=num_classes,
        backbone=cfg.model.backbone,
        pretrained=cfg.model.pretrained if pretrained is None else pretrained,
        output_stride=cfg.model.output_stride,
        cls_head=cfg.use_cls_head,
        arch=cfg.model.arch,
        fast_depthwise=cfg.model.fast_depthwise,
        **cfg.model.model_args,
    )


def load_model(
    path: str | Path, map_location: Any = "cpu", *, num_classes: int | None = None
) -> tuple[nn.Module, Any, dict]:
    """Rebuild the inference model of a checkpoint (eval mode, on ``map_location``).

    Returns ``(model, cfg, meta)`` with ``meta = {classes, num_classes, palette, step, path}``.
    ``num_classes``, if given, is the dataset's K: a checkpoint for another K is a CheckpointError.
    """
    state = load_checkpoint(path, map_location=map_location)
    cfg = config_of(state, path)
    stored_k = int(state["num_classes"])
    if num_classes is not None and num_classes != stored_k:
        raise CheckpointError(
            f"{path}: checkpoint was trained for {stored_k} classes but the dataset has {num_classes}"
        )
    # Pretrained weights would be overwritten anyway; never fetch them here.
    model = build_segmenter(cfg, stored_k, pretrained=False)
    load_state_dict_checked(model, state["model"], path, "model")
    model.to(map_location if isinstance(map_location, str | torch.device) else "cpu")
    model.eval()
    meta = {
        "classes": list(state.get("classes") or [str(i) for i in range(stored_k)]),
        "num_classes": stored_k,
        "palette": np.asarray(state.get("palette") or voc_palette(stored_k), dtype=np.uint8),
        "step": int(state["step"]),
        "path": str(path),
    }
    return model, cfg, meta
