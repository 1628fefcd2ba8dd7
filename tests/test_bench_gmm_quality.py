"""bench/gmm_quality.py measures P and every G variant of tiny synthetic runs (no training here
beyond the two 2-step runs it measures)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from agmm.config import load_config
from agmm.engine.train import train

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gmm_quality.py"

TINY_DEMO = [
    "data.dataset_args={num_images: 16, image_size: [32, 32], num_classes: 3}",
    "data.crop_size=24",
    "model.model_args={aspp_channels: 16, decoder_channels: 16, low_level_channels: 8}",
    "loss.embed_dim=8",
    "train.batch_size=2",
    "train.steps=2",
    "train.validate=false",
    "train.val_every=0",
    "train.checkpoint_every=2",
    "train.progress_bar=false",
    "train.tensorboard=false",
]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gmm_quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def two_seed_runs(tmp_path_factory) -> list[Path]:
    """Two 2-step runs of the synthetic demo setting, seeds 0 and 1."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runs = []
    for seed in (0, 1):
        out = tmp_path_factory.mktemp(f"run_s{seed}")
        train(load_config("synthetic/demo", [*TINY_DEMO, f"seed={seed}", f"output_dir={out}"]))
        runs.append(out)
    torch.set_num_threads(threads)
    return runs


def test_table_has_every_row_and_view_with_mean_and_std_over_runs(bench, two_seed_runs):
    table, per_run = bench.quality_report(
        two_seed_runs, images=4, batch_size=2, sigma_priors=(0.0, 4.0), oem_steps=(0, 1)
    )
    print(table)
    rows = bench.row_names((0.0, 4.0), (0, 1))
    assert len(rows) == 2 + 2 * 2 * 2
    assert {"P", "P|clicked", "G_old sigma_prior=4", "G_new oem=1 x P sigma_prior=0"} <= set(rows)
    lines = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()}
    for row in rows:
        cells = re.findall(r"(\d+\.\d) ± (\d+\.\d)", lines[row.replace("|", r"\|")])
        assert len(cells) == len(bench.VIEWS), lines[row]
    for run in per_run:
        for view in bench.VIEWS:
            assert set(run[view]["miou"]) == set(rows)
            assert all(0.0 <= value <= 100.0 for value in run[view]["miou"].values())
            assert set(run[view]["medians"]) == set(bench.SPREAD_NAMES)


def test_the_command_line_measures_the_e_step_even_without_oem_steps_0(
    bench, two_seed_runs, capsys
):
    bench.main([str(two_seed_runs[0]), "--images", "2", "--sigma-prior", "4", "--oem-steps", "1"])
    table = capsys.readouterr().out
    assert "| G_old sigma_prior=4 |" in table and "| G_new oem=1 x P sigma_prior=4 |" in table
    assert "±" not in table  # one run: plain values
