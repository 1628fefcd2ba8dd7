"""The training loop on a tiny synthetic run: it learns, resumes exactly, survives bad steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agmm.engine.run_log import RunLogger
from agmm.engine.train import train
from agmm.engine.trainer import NonFiniteLossError
from agmm.errors import CheckpointError, ConfigError
from agmm.gmm.loss import AGMMLoss
from agmm.runtime.checkpoint import load_checkpoint


def _weights(path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)
    return {
        **{f"model.{k}": v for k, v in state["model"].items()},
        **{f"loss.{k}": v for k, v in state["loss_module"].items()},
    }


@pytest.mark.slow
def test_twenty_steps_lower_the_loss_and_write_the_run_files(tiny_config, capsys):
    cfg = tiny_config(
        "train.steps=20", "train.log_every=5", "train.val_every=10", "train.tensorboard=true"
    )
    result = train(cfg)
    first_line = next(line for line in capsys.readouterr().out.splitlines() if "agmm train" in line)
    assert "on cpu" in first_line and "channels_last" in first_line  # train.channels_last: auto
    assert result["step"] == 20 and result["skipped_steps"] == 0
    assert result["loss"] < result["first_loss"]
    assert 0.0 <= result["val/miou"] <= 1.0
    assert 0.0 <= result["pseudo/gmm_miou"] <= 1.0
    out = cfg.output_dir
    lines = [json.loads(line) for line in open(f"{out}/metrics.jsonl")]
    train_lines = [line for line in lines if "train/loss" in line]
    assert [line["step"] for line in train_lines] == [5, 10, 15, 20]
    for term in ("seg", "self", "weak", "con"):
        assert f"train/{term}" in train_lines[0]
    assert any("val/miou" in line for line in lines)
    assert (Path(out) / "tensorboard").is_dir()
    assert load_checkpoint(f"{out}/last.pt")["step"] == 20


@pytest.mark.slow
def test_kill_and_resume_reproduces_the_uninterrupted_weights(tiny_config):
    # 8 images, batch 2: 6 steps cross an epoch boundary, the stop at 3 is mid-epoch.
    straight = tiny_config("train.validate=false", "train.steps=6")
    train(straight)

    interrupted = tiny_config("train.validate=false", "train.steps=6")
    first = train(interrupted, stop_at_step=3)
    assert first["step"] == 3
    resumed = train(interrupted, resume="auto")
    assert resumed["step"] == 6

    expected = _weights(f"{straight.output_dir}/last.pt")
    got = _weights(f"{interrupted.output_dir}/last.pt")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)


def test_resume_of_a_checkpoint_mid_epoch_keeps_the_data_position(tiny_config):
    # 8 images, batch 2: an epoch is 4 steps, so step 3 stops mid-epoch.
    cfg = tiny_config("train.validate=false", "train.steps=6", "train.checkpoint_every=3")
    train(cfg, stop_at_step=3)
    state = load_checkpoint(f"{cfg.output_dir}/last.pt")
    assert state["sampler"] == {"epoch": 0, "position": 3}
    assert state["step"] == 3


def test_a_non_finite_loss_skips_the_step_and_is_counted(tiny_config, monkeypatch):
    original = AGMMLoss.forward
    calls = {"n": 0}

    def sometimes_nan(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] in (2, 3):
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(AGMMLoss, "forward", sometimes_nan)
    cfg = tiny_config("train.validate=false", "train.steps=5", "train.max_skipped_steps=2")
    result = train(cfg)
    assert result["skipped_steps"] == 2
    assert result["step"] == 5
    weights = _weights(f"{cfg.output_dir}/last.pt")
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    logged = [json.loads(line) for line in open(f"{cfg.output_dir}/metrics.jsonl")]
    assert [line["train/skipped_steps"] for line in logged if "train/loss" in line][-1] == 2


def test_too_many_non_finite_losses_stop_training_with_a_clear_error(tiny_config, monkeypatch):
    original = AGMMLoss.forward

    def always_nan(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(AGMMLoss, "forward", always_nan)
    cfg = tiny_config("train.validate=false", "train.max_skipped_steps=1")
    with pytest.raises(NonFiniteLossError, match="max_skipped_steps"):
        train(cfg)


def test_missing_data_path_fails_before_training(tiny_config, tmp_path):
    cfg = tiny_config("data.name=camvid", f"data.root={tmp_path}/nowhere")
    with pytest.raises(ConfigError, match="data.root.*nowhere"):
        train(cfg)


def test_batch_that_does_not_split_over_processes_is_refused(tiny_config, monkeypatch):
    from agmm.runtime import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(ConfigError, match="train.batch_size"):
        train(tiny_config())


def test_image_tags_train_the_classifier_then_use_cam_seeds(tiny_config):
    cfg = tiny_config(
        "data.supervision=tags",
        "data.weak_label_args={}",
        "loss.cam_warmup_steps=2",
        "train.validate=false",
        "train.steps=4",
        "train.log_every=1",
    )
    assert cfg.use_cls_head
    result = train(cfg)
    assert result["skipped_steps"] == 0
    logged = [json.loads(line) for line in open(f"{cfg.output_dir}/metrics.jsonl")]
    steps = {line["step"]: line for line in logged if "train/loss" in line}
    assert steps[1]["train/cls"] > 0
    assert steps[1]["train/seg"] == 0.0  # warm-up: classification only
    assert steps[4]["train/seg"] > 0.0  # then the CAM seeds supervise the segmenter


def test_boxes_without_seed_files_get_seeds_computed_before_training(tiny_config, monkeypatch):
    """The engine asks agmm.seeds for the box seeds once and trains on the folder it wrote."""
    import numpy as np
    from PIL import Image

    from agmm.seeds import box_cache

    calls = []

    def fake_compute_box_seeds(dataset, cache_dir, *, out_dir, **options):
        calls.append(options)
        Path(out_dir).mkdir(parents=True)
        for index in range(len(dataset)):
            sample = dataset[index]
            seeds = np.asarray(sample["mask"], dtype=np.uint8).copy()
            seeds[::2] = 255  # "uncertain" rows
            Image.fromarray(seeds).save(Path(out_dir) / f"{sample['name']}.png")

    monkeypatch.setattr(box_cache, "compute_box_seeds", fake_compute_box_seeds)
    cfg = tiny_config(
        "data.supervision=boxes",
        "data.weak_label_args={}",
        "data.box_seed_args={iterations: 2}",
        "train.validate=false",
        "train.steps=2",
    )
    result = train(cfg)
    assert len(calls) == 1 and calls[0]["iterations"] == 2
    assert result["skipped_steps"] == 0 and result["loss"] > 0
    assert f"{cfg.output_dir}/box_seeds" in (Path(cfg.output_dir) / "config.yaml").read_text()
    assert len(list((Path(cfg.output_dir) / "box_seeds").glob("*.json"))) == 8


@pytest.mark.slow
def test_gmm_warmup_trains_l_seg_only_first_then_adds_the_gmm(tiny_config):
    cfg = tiny_config(
        "train.steps=8", "train.log_every=2", "train.validate=false", "loss.gmm_warmup_steps=4"
    )
    train(cfg)
    lines = [json.loads(line) for line in open(f"{cfg.output_dir}/metrics.jsonl")]
    by_step = {line["step"]: line for line in lines if "train/loss" in line}
    for step in (2, 4):  # warm-up windows: L_seg only, the GMM's terms are exactly 0
        assert by_step[step]["train/seg"] > 0
        assert all(by_step[step][f"train/{term}"] == 0 for term in ("self", "weak", "con"))
    for step in (6, 8):  # after it every term is on
        assert all(by_step[step][f"train/{term}"] > 0 for term in ("seg", "self", "weak", "con"))


def test_negative_gmm_warmup_is_refused(tiny_config):
    with pytest.raises(ConfigError, match="loss.gmm_warmup_steps"):
        train(tiny_config("loss.gmm_warmup_steps=-1"))


@pytest.mark.slow
def test_weight_ema_is_validated_saved_and_resumed_exactly(tiny_config):
    straight = tiny_config("train.validate=false", "train.steps=6", "train.ema_decay=0.9")
    train(straight)
    state = load_checkpoint(f"{straight.output_dir}/last.pt")
    assert state["model"].keys() == state["model_train"].keys()
    # the averaged weights lag behind the trained ones, and lie between the start and the end
    name = next(k for k, v in state["model"].items() if v.is_floating_point() and v.ndim == 4)
    assert not torch.equal(state["model"][name], state["model_train"][name])
    # eval / predict / export rebuild the model from the averaged weights
    from agmm.models.build import load_model

    model = load_model(f"{straight.output_dir}/last.pt")[0]
    torch.testing.assert_close(model.state_dict()[name], state["model"][name])

    interrupted = tiny_config("train.validate=false", "train.steps=6", "train.ema_decay=0.9")
    train(interrupted, stop_at_step=3)
    train(interrupted, resume="auto")
    got = load_checkpoint(f"{interrupted.output_dir}/last.pt")
    for key in ("model", "model_train"):
        for param, value in state[key].items():
            torch.testing.assert_close(got[key][param], value, rtol=0, atol=1e-6, msg=param)


def test_weight_ema_follows_timms_warm_up_schedule(tiny_config):
    """Update 1 copies the trained weights (decay 0); update 2 mixes with 1 - 2^(-2/3)."""
    cfg = tiny_config(
        "train.validate=false",
        "train.steps=2",
        "train.ema_decay=0.99",
        "train.checkpoint_every=1",
        "train.keep_checkpoints=2",
    )
    train(cfg)
    first = load_checkpoint(f"{cfg.output_dir}/step_00000001.pt")
    second = load_checkpoint(f"{cfg.output_dir}/step_00000002.pt")
    decay = 1.0 - 2.0 ** (-2.0 / 3.0)
    moved = 0
    for param, trained in second["model_train"].items():
        if not trained.is_floating_point() or param.endswith("num_batches_tracked"):
            continue
        torch.testing.assert_close(first["model"][param], first["model_train"][param], msg=param)
        expected = decay * first["model_train"][param] + (1 - decay) * trained
        torch.testing.assert_close(second["model"][param], expected, msg=param)
        moved += int(not torch.equal(first["model_train"][param], trained))
    assert moved > 0  # the weights did change between the two steps


def test_ema_resume_from_a_checkpoint_without_ema_is_refused(tiny_config):
    cfg = tiny_config("train.validate=false", "train.steps=2")
    train(cfg, stop_at_step=1)
    with_ema = tiny_config("train.validate=false", "train.steps=2", "train.ema_decay=0.9")
    with pytest.raises(CheckpointError, match="no averaged weights"):
        train(with_ema, resume=f"{cfg.output_dir}/last.pt")
    with pytest.raises(ConfigError, match="train.ema_decay"):
        train(tiny_config("train.ema_decay=1.0"))


def _nan_from_call(monkeypatch, first_bad_call: int) -> None:
    """AGMMLoss returns a NaN loss from its ``first_bad_call``-th call on."""
    original, calls = AGMMLoss.forward, iter(range(1, 10_000))

    def nan_later(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if next(calls) >= first_bad_call:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(AGMMLoss, "forward", nan_later)


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing(tiny_config, monkeypatch):
    _nan_from_call(monkeypatch, 1)
    cfg = tiny_config("train.validate=false", "train.max_skipped_steps=0", "train.tensorboard=true")
    with pytest.raises(NonFiniteLossError) as caught:
        train(cfg)
    assert not Path(cfg.output_dir).exists()  # no config.yaml, metrics.jsonl or tensorboard/
    assert not getattr(caught.value, "__notes__", None)
    assert not RunLogger.live  # its progress bar was closed before the error is printed


def test_a_run_that_fails_after_a_checkpoint_says_how_to_resume(tiny_config, monkeypatch):
    _nan_from_call(monkeypatch, 4)
    cfg = tiny_config(
        "train.validate=false", "train.max_skipped_steps=0", "train.checkpoint_every=2"
    )
    with pytest.raises(NonFiniteLossError) as caught:
        train(cfg)
    assert load_checkpoint(f"{cfg.output_dir}/last.pt")["step"] == 2
    assert caught.value.__notes__ == [
        f"{cfg.output_dir}/last.pt is kept: continue with `agmm train --resume {cfg.output_dir}` "
        "(plus the same --config and overrides)"
    ]


@pytest.mark.slow
def test_the_log_of_a_resumed_run_equals_the_uninterrupted_log(tiny_config):
    options = ("train.validate=false", "train.steps=6", "train.log_every=1")
    straight = tiny_config(*options)
    expected = train(straight)
    interrupted = tiny_config(*options, "train.checkpoint_every=2", "train.keep_checkpoints=2")
    train(interrupted, stop_at_step=4)
    out = Path(interrupted.output_dir)
    # a kill while step 4 was being saved: last.pt is still step 2's, the log has steps 3 and 4
    (out / "step_00000002.pt").replace(out / "last.pt")
    resumed = train(interrupted, resume="auto")
    lines = [json.loads(line) for line in open(out / "metrics.jsonl")]
    lines = [line for line in lines if "train/loss" in line]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    times = [line["time"] for line in lines]
    assert times == sorted(times) and times[3] > 0
    assert resumed["first_loss"] == pytest.approx(expected["first_loss"], rel=1e-5)
    want = [json.loads(line) for line in open(f"{straight.output_dir}/metrics.jsonl")]
    want = [line["train/loss"] for line in want if "train/loss" in line]
    assert [line["train/loss"] for line in lines] == pytest.approx(want, rel=1e-4)
