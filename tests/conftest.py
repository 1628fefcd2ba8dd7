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
    torch.manual_seed(0)
    yield
