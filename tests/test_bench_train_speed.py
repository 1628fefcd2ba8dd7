"""bench/train_speed.py runs end to end on a tiny setting and prints its tables (the timings
themselves are the benchmark's, not the test's)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "train_speed.py"
TINY = [
    "--backbones",
    "resnet18",
    "--size",
    "32",
    "--batch",
    "2",
    "--width",
    "16",
    "--device",
    "cpu",
]


def _run_bench(*args: str) -> str:
    """The benchmark's stdout on a tiny ResNet-18 setting."""
    command = [sys.executable, str(BENCH), *TINY, *args]
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout


@pytest.mark.slow
def test_loss_table_has_a_row_per_setting_with_the_gmms_isolated_share():
    out = _run_bench("--tables", "loss", "--steps", "1", "--repeats", "2")
    rows = [line for line in out.splitlines() if line.startswith("| resnet18 |")]
    settings = {tuple(cell.strip() for cell in row.split("|")[2:4]) for row in rows}
    assert ("fp32", "NCHW") in settings and ("fp32", "channels_last") in settings
    assert len(rows) == len(settings)  # one row per precision x memory format
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        plain, gmm = float(cells[3]), float(cells[4])
        assert plain > 0 and gmm > 0
        assert re.fullmatch(r"[+-]\d+\.\d %", cells[5]) and re.fullmatch(r"[+-]\d+\.\d %", cells[7])
        assert re.fullmatch(r"\d+\.\d\dx", cells[8])


@pytest.mark.slow
def test_terms_table_has_a_row_per_variant():
    out = _run_bench("--tables", "terms", "--term-calls", "3")
    assert "Terms table:" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert names[0] == "AGMM++" and names[-1] == "L_seg only" and len(names) == 6
    for row in rows[1:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and re.fullmatch(r"[+-]\d+\.\d\d", cells[2])
    assert rows[-1].strip().endswith("+0.00 |")
