"""Subsets of a dataset that keep its attributes."""

from __future__ import annotations

from torch.utils.data import Dataset, Subset


class FirstImages(Subset):
    """The first ``count`` samples of a dataset, keeping its attributes (classes, palette, ...)."""

    def __init__(self, dataset: Dataset, count: int) -> None:
        super().__init__(dataset, range(count))

    def __getattr__(self, name: str):
        if name == "dataset":  # not yet set during unpickling
            raise AttributeError(name)
        return getattr(self.dataset, name)
