"""Metric state that is summed over processes, declared once and synced by one path.

A metric (a confusion matrix, pixel counts) declares its tensors with :meth:`Accumulator.add_state`
(or nests other accumulators); :meth:`Accumulator.all_reduce` sums every declared tensor over the
processes with :func:`agmm.runtime.distributed.all_reduce_sum` and :meth:`Accumulator.reset`
zeroes them, so no metric writes its own DDP code.

Why not torchmetrics (``Metric.add_state(..., dist_reduce_fx="sum")``, the model for this class):
it is not a dependency of agmm, and what it adds is not needed here: its ``Metric`` is an
``nn.Module`` whose ``forward`` also computes per batch, it syncs by all-gathering every state
(world-size copies) and caches / un-syncs the result, while our states are a few exact int64 /
float64 counters that one in-place all-reduce sums.
"""

from __future__ import annotations

import torch

from agmm.runtime.distributed import all_reduce_sum


class Accumulator:
    """Base class of metrics whose state is summed over processes.

    Subclasses call ``super().__init__()``, then ``self.x = self.add_state("x", tensor)`` for each
    counter (updated in place, e.g. ``self.x += counts``) and ``self.add_state(name, child)`` for
    nested accumulators.
    """

    def __init__(self) -> None:
        self._states: dict[str, torch.Tensor | Accumulator] = {}

    def add_state(self, name: str, value):
        """Declares ``value`` (a tensor summed over processes, or an Accumulator); returns it."""
        if name in self._states:
            raise ValueError(f"state {name!r} is declared twice")
        self._states[name] = value
        return value

    def state_tensors(self) -> list[torch.Tensor]:
        """Every declared tensor, nested accumulators' included, in declaration order."""
        tensors = []
        for value in self._states.values():
            tensors += value.state_tensors() if isinstance(value, Accumulator) else [value]
        return tensors

    def reset(self) -> None:
        for tensor in self.state_tensors():
            tensor.zero_()

    def all_reduce(self):
        """Sums every state over the processes, in place (no-op in a single process); returns self."""
        for tensor in self.state_tensors():
            all_reduce_sum(tensor)
        return self
