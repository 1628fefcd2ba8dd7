"""Shared fixtures. CamVid is read from $AGMM_CAMVID or ../shared/data/camvid beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def camvid_root() -> Path | None:
    candidates = [os.environ.get("AGMM_CAMVID"), REPO.parent / "shared" / "data" / "camvid"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "images" / "train").is_dir():
            return Path(candidate)
    return None


@pytest.fixture
def camvid() -> Path:
    root = camvid_root()
    if root is None:
        pytest.skip("CamVid not found: set AGMM_CAMVID")
    return root


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Seed 0 and one intra-op thread for every test: on a shared 2-core machine, OpenMP threads
    spinning against other processes made a ViT-Tiny forward 70x slower (0.8 s instead of 11 ms)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
