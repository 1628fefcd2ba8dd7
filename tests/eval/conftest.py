"""Fixtures of the eval tests; the stand-in model and dataset live in stand_ins.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pytest's importlib mode does not add it

from stand_ins import PointwiseSegmenter  # noqa: E402


@pytest.fixture
def model():
    return PointwiseSegmenter().eval()
