"""Checkpoint files: written atomically, read back and checked (for resume, or for
:func:`agmm.models.build.load_model` to rebuild the inference model).

File format (a ``torch.save`` dict, loadable with ``weights_only=True``)::

    {"format": "agmm-checkpoint-v1", "step": int, "model": state_dict, "loss_module": state_dict,
     "optimizer": ..., "scheduler": ..., "scaler": ... | None, "rng": {...}, "sampler": {"epoch", "position"},
     "skipped_steps": int, "config": dataclasses.asdict(cfg), "classes": [...], "num_classes": K,
     "palette": [[r, g, b], ...]}

With ``train.ema_decay > 0``, ``model`` holds the averaged weights (what inference uses) and
``model_train`` the trained ones (what a resumed run continues from).
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agmm.config import config_from_dict
from agmm.errors import AGMMError, CheckpointError

FORMAT = "agmm-checkpoint-v1"
LAST = "last.pt"


# ---------------------------------------------------------------------------------------------
# Writing


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: ``<path>.tmp``, fsync, then ``os.replace``.

    A run killed while saving leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def write_run_checkpoint(state: dict, output_dir: str | Path, keep: int = 0) -> Path:
    """Save ``output_dir/last.pt``; with ``keep > 0`` also ``step_<N>.pt`` for the newest ``keep``."""
    output_dir = Path(output_dir)
    last = save_checkpoint(state, output_dir / LAST)
    if keep > 0:
        numbered = output_dir / f"step_{state['step']:08d}.pt"
        tmp = numbered.with_name(numbered.name + ".tmp")
        shutil.copyfile(last, tmp)
        os.replace(tmp, numbered)
        for old in sorted(output_dir.glob("step_*.pt"))[:-keep]:
            old.unlink(missing_ok=True)
    return last


# ---------------------------------------------------------------------------------------------
# RNG state (kept to plain ints / tensors so that ``torch.load(weights_only=True)`` accepts it)


def capture_rng() -> dict:
    """The python, numpy, torch and (if any) CUDA random states of this process."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ---------------------------------------------------------------------------------------------
# Reading


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Read and check a checkpoint file (or a run folder's ``last.pt``); CheckpointError (naming
    the file) if it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for truncated / foreign files
        raise CheckpointError(
            f"{path}: not a readable checkpoint (corrupt, truncated or not written by agmm)"
            + _load_failure_detail(error)
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path}: not an agmm checkpoint (format {found!r}, expected {FORMAT!r})"
        )
    missing = [k for k in ("step", "model", "config", "num_classes") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state


def _load_failure_detail(error: Exception) -> str:
    """``": <torch's first sentence>"`` when it says something in words; torch's reasons for a
    garbage file are often a bare pickle key such as ``'101'``, which would only puzzle."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
    reason = reason.split(". ")[0].strip("'\" .")[:120]
    return f": {reason}" if sum(ch.isalpha() for ch in reason) >= 8 else ""


def resolve_resume(resume: str | Path | None, output_dir: str | Path) -> Path | None:
    """``None`` -> None; ``"auto"`` -> ``output_dir/last.pt`` if it exists; else the given path."""
    if resume is None:
        return None
    if str(resume) == "auto":
        last = Path(output_dir) / LAST
        return last if last.is_file() else None
    path = Path(resume)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise CheckpointError(f"{path}: cannot resume, checkpoint file does not exist")
    return path


def config_of(state: dict, path: str | Path):
    """The :class:`agmm.config.Config` stored in a checkpoint."""
    try:
        return config_from_dict(state["config"])
    except AGMMError as error:
        raise CheckpointError(f"{path}: stored config is not valid: {error}") from None


def load_state_dict_checked(
    module: nn.Module, state_dict: dict, path: str | Path, what: str
) -> None:
    """``module.load_state_dict`` with a CheckpointError naming the file on any mismatch."""
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])
        raise CheckpointError(f"{path}: {what} weights do not fit this model: {detail}") from None


def config_dict(cfg) -> dict:
    """``dataclasses.asdict(cfg)`` with tuples kept (weights_only loading accepts them)."""
    return dataclasses.asdict(cfg)
