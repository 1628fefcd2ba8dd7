"""The shared runtime: the bottom layer that every other package may import, and that imports
no other part of agmm except :mod:`agmm.errors`, :mod:`agmm.config` and :mod:`agmm.outputs`
(which belong to this layer too).

- ``constants``: the ignore value, ImageNet normalisation, dataset class tables.
- ``distributed``: the only torch.distributed code (process group, rank, sums over ranks).
- ``accumulator``: metric state declared once and summed over processes by one path.
- ``checkpoint``: checkpoint files (format, atomic writes, checked reads, RNG state).

The layer order is written down in docs/ARCHITECTURE.md ("Layers") and enforced by
tests/test_layers.py.
"""
