"""`agmm train` and `agmm demo`: thin commands over the library."""

from __future__ import annotations

import json

import pytest

from agmm.cli import build_parser, main, parse_args
from tests.engine.conftest import TINY


def test_train_arguments():
    parser = build_parser()
    args = parser.parse_args(["train", "--config", "camvid/points", "train.steps=3", "seed=1"])
    assert args.config == "camvid/points" and args.resume is None
    assert args.overrides == ["train.steps=3", "seed=1"]
    args = parser.parse_args(["train", "--config", "camvid/points", "--resume"])
    assert args.resume == "auto"
    args = parser.parse_args(["train", "--resume", "runs/x/last.pt", "train.steps=9"])
    assert args.resume == "runs/x/last.pt" and args.overrides == ["train.steps=9"]


@pytest.mark.parametrize(
    "argv, resume",
    [
        (["--resume", "train.steps=45", "data.root=R"], "auto"),
        (["--resume", "data.root=R", "train.steps=45"], "auto"),
        (["train.steps=45", "--resume", "data.root=R"], "auto"),
        (["--resume", "runs/a=b/last.pt", "train.steps=45", "data.root=R"], "runs/a=b/last.pt"),
        (["train.steps=45", "--resume", "runs/x/last.pt", "data.root=R"], "runs/x/last.pt"),
    ],
)
def test_key_value_tokens_are_overrides_wherever_they_stand(argv, resume):
    args = parse_args(build_parser(), ["train", "--config", "camvid/points", *argv])
    assert args.resume == resume and args.config == "camvid/points"
    assert sorted(args.overrides) == ["data.root=R", "train.steps=45"]


def test_bad_config_key_fails_before_training_with_exit_code_1(capsys):
    assert main(["train", "--config", "synthetic/demo", "train.stepz=3"]) == 1
    assert "unknown config key 'train.stepz'" in capsys.readouterr().err


def test_missing_dataset_folder_is_named(capsys, tmp_path):
    code = main(["train", "--config", "camvid/points", f"data.root={tmp_path}/camvid"])
    assert code == 1
    assert f"data.root: folder {tmp_path}/camvid does not exist" in capsys.readouterr().err


def test_train_without_config_needs_a_checkpoint(capsys):
    assert main(["train"]) == 1
    assert "--config is required" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_from_a_checkpoint_with_its_own_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", "synthetic/demo", *TINY, "train.steps=2",
                 "train.validate=false", f"output_dir={out}"]) == 0  # fmt: skip
    assert main(["train", "--resume", str(out / "last.pt"), "train.steps=3"]) == 0
    assert json.loads((out / "result.json").read_text())["step"] == 3


@pytest.mark.slow
def test_demo_trains_both_runs_and_writes_pictures(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "2", *TINY, "train.val_every=2"]) == 0
    printed = capsys.readouterr().out
    assert "| L_seg only |" in printed and "| AGMM++ |" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"lseg_only", "agmm"}
    assert "pseudo/gmm_miou" in results["agmm"] and "pseudo/gmm_miou" not in results["lseg_only"]
    for run in ("lseg_only", "agmm"):
        assert (out / run / "panels.png").stat().st_size > 10_000
        assert (out / run / "report.html").is_file()
    assert (out / "report.html").is_file()
