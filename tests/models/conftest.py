"""One intra-op thread for these tiny tensors: on a shared 2-core machine, OpenMP threads spinning
against other processes made a ViT-Tiny forward 70× slower (0.8 s instead of 11 ms)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
