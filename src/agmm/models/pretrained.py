"""Backbone weights: timm names (downloaded by timm) or a local state-dict file.

``pretrained`` everywhere in :mod:`agmm.models` is one of

- ``False``: random initialisation (tests, CPU benchmarks, machines without network);
- ``True``: timm's ImageNet weights for the backbone name (needs network or timm's cache);
- a path (``str`` / ``os.PathLike``) to a ``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors`` file
  holding the backbone's state dict in timm's layout (``timm.create_model(name).state_dict()``),
  optionally wrapped in ``{"state_dict": ...}`` or ``{"model": ...}``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import timm
import torch
from torch import nn

from agmm.errors import CheckpointError, ConfigError

_logger = logging.getLogger(__name__)

# Keys of a full timm checkpoint that the segmentation backbones do not have (their classifiers).
_CLASSIFIER_PREFIXES = ("fc.", "head.", "head_drop.", "classifier.")


def create_backbone(name: str, pretrained: bool | str | os.PathLike, **timm_kwargs) -> nn.Module:
    """``timm.create_model(name, **timm_kwargs)`` with ``pretrained`` resolved as the module says."""
    if not timm.is_model(name):
        raise ConfigError(f"model.backbone: timm has no model named {name!r}")
    if pretrained is True:
        try:
            return timm.create_model(name, pretrained=True, **timm_kwargs)
        except Exception as error:  # network, hub or cache errors all mean "no weights here"
            raise CheckpointError(
                f"could not get timm's pretrained weights for {name!r} ({type(error).__name__}: "
                f"{error}). Without network, download them elsewhere and pass "
                "pretrained=<path to the state-dict file>, or use pretrained=False."
            ) from error
    model = timm.create_model(name, pretrained=False, **timm_kwargs)
    if pretrained is False or pretrained is None:
        return model
    load_backbone_weights(model, Path(pretrained))
    return model


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (unwrapping ``state_dict`` / ``model`` / ``module.``)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: pretrained weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path}: cannot read pretrained weights ({error})") from error
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(
            f"{path}: expected a state dict of tensors, got {type(state).__name__}"
        )
    cleaned = {}
    for key, value in state.items():
        for prefix in ("module.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        cleaned[key] = value
    return cleaned


def load_backbone_weights(model: nn.Module, path: Path) -> None:
    """Load ``path`` into a timm backbone; every backbone tensor must be found, with its shape.

    Classifier weights of a full ImageNet checkpoint are dropped. ViT position embeddings of another
    grid size are resampled (timm's ``resample_abs_pos_embed``).
    """
    state = read_state_dict(path)
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(_CLASSIFIER_PREFIXES)}
    pos = state.get("pos_embed")
    if pos is not None and "pos_embed" in own and pos.shape != own["pos_embed"].shape:
        from timm.layers import resample_abs_pos_embed

        num_prefix = getattr(model, "num_prefix_tokens", 1)
        grid = model.patch_embed.grid_size
        state["pos_embed"] = resample_abs_pos_embed(pos, list(grid), num_prefix_tokens=num_prefix)
    wrong_shape = [
        f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    missing = [k for k in own if k not in state]
    if wrong_shape or missing:
        problems = (wrong_shape + [f"missing {k}" for k in missing])[:5]
        raise CheckpointError(
            f"{path}: does not fit backbone {type(model).__name__} "
            f"({len(wrong_shape)} wrong shapes, {len(missing)} missing tensors; first: "
            f"{'; '.join(problems)})"
        )
    unexpected = [k for k in state if k not in own]
    if unexpected:
        _logger.warning(
            "%s: ignored %d tensors not in the backbone, e.g. %s",
            path,
            len(unexpected),
            unexpected[:3],
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
