"""A data order that depends only on (seed, epoch, position), so a resumed run sees the same batches.

``ResumableSampler`` shuffles like ``DistributedSampler`` (a permutation seeded by seed + epoch,
sharded over ranks) and can start an epoch part-way through, skipping the batches a checkpointed
run already consumed without loading them. It yields ``(epoch, index)`` pairs; ``SeededDataset``
seeds the random augmentation of each sample from ``(seed, epoch, index)``, so the crops and flips
do not depend on the number of DataLoader workers or on where the run was resumed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that yields ``(epoch, index)`` and can skip an epoch's first samples."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from this rank's ``start``-th sample on."""
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())[self.start :]
        return iter([(self.epoch, index) for index in indices])

    def __len__(self) -> int:
        return self.num_samples - self.start


class SeededDataset(Dataset):
    """Wraps a dataset: item ``(epoch, index)`` is ``dataset[index]`` drawn with fixed random state.

    The python, numpy and torch generators are seeded from ``(seed, epoch, index)`` for the call
    and restored afterwards, so the caller's random streams are untouched.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        sample_seed = int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
        with fixed_random_state(sample_seed):
            return self.dataset[index]


@contextmanager
def fixed_random_state(seed: int):
    """Seed python, numpy and torch (CPU) generators for a block, then restore their states."""
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)  # CPU only: CUDA streams stay untouched
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])
