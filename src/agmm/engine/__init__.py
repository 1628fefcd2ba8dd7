"""Training engine: the loop (``train``), its optimiser / scheduler, sampler and datasets."""

from agmm.engine.train import train

__all__ = ["train"]
