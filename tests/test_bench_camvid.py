"""bench/camvid.py plans the runs the issue asks for (the training itself is the benchmark)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "camvid.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_camvid", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_quick_plan_is_points_and_blocks_one_seed(bench, tmp_path):
    args = bench.parse_args(["--quick", "--out", str(tmp_path)])
    runs = {run.run_id: run for run in bench.plan_runs(args)}
    assert sorted(runs) == sorted(
        ["full_s0", "points_seg_only_s0", "points_agmm_s0", "blocks_seg_only_s0", "blocks_agmm_s0"]
    )
    assert args.steps == 300 and runs["points_seg_only_s0"].overrides == ["loss.enabled=false"]


def test_full_plan_has_every_column_three_seeds_and_table_15(bench, tmp_path):
    args = bench.parse_args(["--out", str(tmp_path)])
    ids = {run.run_id for run in bench.plan_runs(args)}
    for supervision in bench.SUPERVISIONS:
        assert {f"{supervision}_{c}_s{s}" for c in ("seg_only", "agmm") for s in range(3)} <= ids
        assert {f"{supervision}_{c}_s0" for c in ("self", "weak", "paper")} <= ids
    assert {"points_assign_s0", "points_stopgrad_s0", "points_oem_s0", "points_agmm_l1_s0"} <= ids
    assert "points_self_s1" not in ids  # intermediate columns: one seed


def test_every_run_shares_the_schedule_and_tags_warm_up_scales(bench, tmp_path):
    args = bench.parse_args(["--steps", "40", "--out", str(tmp_path)])
    runs = {run.run_id: run for run in bench.plan_runs(args)}
    tags = bench.common_overrides(args, runs["tags_agmm_s0"], tmp_path / "r")
    points = bench.common_overrides(args, runs["points_agmm_s0"], tmp_path / "r")
    assert "train.steps=40" in tags and "train.steps=40" in points
    assert "loss.cam_warmup_steps=10" in tags
    assert not any(o.startswith("loss.cam_warmup_steps") for o in points)


def test_gap_closed_only_when_full_masks_are_clearly_better(bench, tmp_path):
    args = bench.parse_args(["--quick", "--out", str(tmp_path)])
    runs = bench.plan_runs(args)
    scores = {"full_s0": 0.30, "points_seg_only_s0": 0.20, "points_agmm_s0": 0.26,
              "blocks_seg_only_s0": 0.29, "blocks_agmm_s0": 0.295}  # fmt: skip
    summary = bench.summarise(args, runs, {k: {"val/miou": v} for k, v in scores.items()})
    assert summary["table"]["points"]["gap_closed"] == pytest.approx(0.6)
    assert "gap_closed" not in summary["table"]["blocks"]  # full − L_seg = 1 point < 2


def test_difference_says_whether_agmm_clears_two_seed_stds(bench, tmp_path):
    args = bench.parse_args(["--quick", "--seeds", "3", "--out", str(tmp_path)])
    runs = bench.plan_runs(args)
    scores = {f"full_s{s}": 0.40 for s in range(3)}
    for seed, (base, points, blocks) in enumerate(
        [(0.20, 0.25, 0.21), (0.21, 0.26, 0.19), (0.22, 0.27, 0.23)]
    ):
        scores[f"points_seg_only_s{seed}"] = base
        scores[f"points_agmm_s{seed}"] = points  # +5 with std 1: better by > 2 sd
        scores[f"blocks_seg_only_s{seed}"] = base
        scores[f"blocks_agmm_s{seed}"] = blocks  # +0 with std 2: within 2 sd
    summary = bench.summarise(args, runs, {k: {"val/miou": v} for k, v in scores.items()})
    points, blocks = (
        summary["table"]["points"]["difference"],
        summary["table"]["blocks"]["difference"],
    )
    assert points["mean"] == pytest.approx(5.0) and points["verdict"] == "better by > 2 sd"
    assert blocks["mean"] == pytest.approx(0.0) and blocks["verdict"] == "within 2 sd"
    assert (
        bench.difference({"mean": 30, "std": 1, "n": 3}, {"mean": 25, "std": 1, "n": 3})["verdict"]
        == "worse by > 2 sd"
    )


def test_seeded_cells_do_not_mix_in_the_other_distance(bench, tmp_path):
    args = bench.parse_args(["--seeds", "2", "--default-distance", "l1", "--out", str(tmp_path)])
    runs = bench.plan_runs(args)
    scores = {run.run_id: 0.30 for run in runs}
    scores["points_agmm_sqeuclid_s0"] = 0.90  # would drag the AGMM++ mean up if mixed in
    summary = bench.summarise(args, runs, {k: {"val/miou": v} for k, v in scores.items()})
    points = summary["table"]["points"]
    assert points["agmm"]["mean"] == pytest.approx(30.0) and points["agmm"]["n"] == 2
    assert points["agmm_sqeuclid"]["mean"] == pytest.approx(90.0)
    assert bench.fmt(points["agmm"]) == "30.0 ± 0.0 (s0 30.0)"


def test_one_click_rows_are_the_points_config_with_one_click(bench, tmp_path):
    args = bench.parse_args(["--supervisions", "points1", "--out", str(tmp_path)])
    runs = {run.run_id: run for run in bench.plan_runs(args)}
    paper = runs["points1_paper_s0"]
    assert paper.config == "camvid/points"
    assert paper.overrides == ["data.weak_label_args={points_per_class: 1}", "loss.variant=paper"]


def test_committed_command_lines_carry_no_absolute_paths(bench):
    argv = ["--root", "/home/me/camvid", "--override", "model.pretrained=/w/lite0.pth", "--quick"]
    assert bench.portable(argv) == [
        "--root", "<path>", "--override", "model.pretrained=<path>", "--quick"
    ]  # fmt: skip
    result = {"val/miou": 0.4, "checkpoint": "/x/last.pt", "output_dir": "/x"}
    assert bench.without_paths(result) == {"val/miou": 0.4}


def test_columns_restrict_the_plan(bench, tmp_path):
    args = bench.parse_args(
        ["--columns", "seg_only", "agmm", "--supervisions", "points", "--out", str(tmp_path)]
    )
    ids = {run.run_id for run in bench.plan_runs(args)}
    assert ids == {
        f"{run}_s{s}" for run in ("full", "points_seg_only", "points_agmm") for s in range(3)
    }
