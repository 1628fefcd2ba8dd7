"""AGMM++: weakly-supervised semantic segmentation with adaptive Gaussian mixture pseudo labels.

The public surface is imported lazily so that ``agmm --help`` does not load torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "AGMMLoss": "agmm.gmm.loss",
    "build_model": "agmm.models",
    "MODELS": "agmm.models",
    "adapt": "agmm.models",
    "build_dataset": "agmm.data",
    "DATASETS": "agmm.data",
    "collate_batch": "agmm.data",
    "load_config": "agmm.config",
    "train": "agmm.engine.train",
    "evaluate": "agmm.eval.inference",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'agmm' has no attribute {name!r}")
