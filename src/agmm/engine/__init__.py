"""Training engine: the loop (``train``), DDP helpers, checkpoints (``load_model``)."""

from agmm.engine.checkpoint import load_model

__all__ = ["load_model", "train"]


def __getattr__(name: str):
    if name == "train":  # imported lazily: the loop pulls in data, models and the GMM module
        from agmm.engine.train import train

        return train
    raise AttributeError(name)
