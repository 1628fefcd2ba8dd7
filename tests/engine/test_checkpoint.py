"""Checkpoints: atomic writes, the documented format, load_model, clear errors on bad files."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from agmm.engine.train import train
from agmm.errors import CheckpointError
from agmm.models.build import load_model
from agmm.runtime.checkpoint import (
    FORMAT,
    capture_rng,
    load_checkpoint,
    resolve_resume,
    restore_rng,
    save_checkpoint,
    write_run_checkpoint,
)


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    from agmm.config import load_config
    from tests.engine.conftest import TINY

    out = tmp_path_factory.mktemp("ckpt")
    cfg = load_config(None, [*TINY, "train.steps=2", "train.validate=false", f"output_dir={out}"])
    train(cfg)
    return out / "last.pt"


def test_checkpoint_has_the_documented_keys(trained_checkpoint):
    state = load_checkpoint(trained_checkpoint)
    for key in ("format", "step", "model", "loss_module", "optimizer", "scheduler", "rng",
                "sampler", "config", "classes", "num_classes", "palette"):  # fmt: skip
        assert key in state, key
    assert state["format"] == FORMAT and state["step"] == 2 and state["num_classes"] == 3
    assert len(state["classes"]) == len(state["palette"]) == 3
    assert not list(trained_checkpoint.parent.glob("*.tmp"))


def test_load_model_rebuilds_the_inference_model(trained_checkpoint):
    model, cfg, meta = load_model(trained_checkpoint)
    assert not model.training
    assert meta["num_classes"] == 3 and meta["step"] == 2 and meta["palette"].shape == (3, 3)
    assert cfg.model.backbone == "resnet18"
    with torch.no_grad():
        logits = model(torch.zeros(1, 3, 32, 32))["logits"]
    assert logits.shape == (1, 3, 32, 32)
    state = load_checkpoint(trained_checkpoint)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state["model"][name])


def test_checkpoint_for_another_number_of_classes_is_refused(trained_checkpoint):
    with pytest.raises(CheckpointError, match=r"last.pt.*3 classes.*has 5"):
        load_model(trained_checkpoint, num_classes=5)


def test_corrupt_or_foreign_files_raise_checkpoint_error_naming_the_file(
    tmp_path, trained_checkpoint
):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(trained_checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_model(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.pt.*not an agmm checkpoint"):
        load_model(foreign)
    with pytest.raises(CheckpointError, match="absent.pt.*does not exist"):
        load_model(tmp_path / "absent.pt")


@pytest.mark.parametrize(
    "content", [b"hello world", b"\x80\x02K\x05.", b"PK\x03\x04" + bytes(100), bytes(range(256))]
)
def test_a_garbage_checkpoint_error_ends_in_words_not_numbers(tmp_path, content):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(garbage)
    message = str(caught.value)
    assert message.startswith(f"{garbage}: not a readable checkpoint (corrupt, truncated")
    assert not message.rstrip("'\")").endswith(tuple("0123456789")), message


def test_a_run_folder_stands_for_its_last_checkpoint(tmp_path, trained_checkpoint):
    assert (
        load_checkpoint(trained_checkpoint.parent)["step"]
        == load_checkpoint(trained_checkpoint)["step"]
    )
    _, _, meta = load_model(trained_checkpoint.parent)  # `agmm eval --checkpoint RUN_DIR`
    assert meta["step"] == 2


def test_save_is_atomic_and_keeps_the_newest_numbered_copies(tmp_path):
    for step in (1, 2, 3):
        write_run_checkpoint({"format": FORMAT, "step": step}, tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "last.pt", "step_00000002.pt", "step_00000003.pt",
    ]  # fmt: skip
    assert torch.load(tmp_path / "last.pt")["step"] == 3


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint({"format": FORMAT, "step": 1}, tmp_path / "last.pt")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint({"format": FORMAT, "step": 2}, path)
    assert torch.load(path)["step"] == 1


def test_rng_state_round_trips():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = capture_rng()
    expected = random.random(), np.random.rand(), torch.rand(1).item()
    restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_resume_auto_finds_last_or_starts_fresh(tmp_path):
    assert resolve_resume("auto", tmp_path) is None
    assert resolve_resume(None, tmp_path) is None
    save_checkpoint({"format": FORMAT, "step": 1}, tmp_path / "last.pt")
    assert resolve_resume("auto", tmp_path) == tmp_path / "last.pt"
    assert resolve_resume(tmp_path, "elsewhere") == tmp_path / "last.pt"
    with pytest.raises(CheckpointError, match="nothing.pt"):
        resolve_resume(tmp_path / "nothing.pt", tmp_path)
