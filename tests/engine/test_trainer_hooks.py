"""The trainer's hooks: called around every step, their state saved and resumed by one list."""

from __future__ import annotations

import json

from agmm.engine.train import train
from agmm.engine.trainer import HookBase
from agmm.runtime.checkpoint import load_checkpoint


class CountingHook(HookBase):
    """A new concern with state: counts the applied steps, and reports the count at validation."""

    def __init__(self) -> None:
        self.count = 0
        self.events: list[str] = []
        self.loaded: dict | None = None

    def before_train(self, trainer) -> None:
        self.events.append(f"before_train@{trainer.step}")

    def after_step(self, trainer, result) -> None:
        self.count += int(result.finite)
        self.events.append(f"after_step@{trainer.step}")

    def after_train(self, trainer) -> None:
        self.events.append(f"after_train@{trainer.step}")

    def metrics(self) -> dict:
        return {"custom/count": float(self.count)}

    def state_dict(self) -> dict:
        return {"custom_count": self.count}

    def load_state_dict(self, state: dict, path) -> None:
        self.loaded = state
        self.count = state["custom_count"]


def test_the_loop_calls_a_hook_before_after_each_step_and_at_the_end(tiny_config):
    hook = CountingHook()
    train(tiny_config("train.validate=false", "train.steps=3"), hooks=[hook])
    assert hook.events == [
        "before_train@0",
        "after_step@1",
        "after_step@2",
        "after_step@3",
        "after_train@3",
    ]


def test_a_new_hooks_state_is_saved_and_resumed_without_touching_the_loop(tiny_config):
    cfg = tiny_config("train.validate=false", "train.steps=5")
    first = CountingHook()
    train(cfg, stop_at_step=2, hooks=[first])
    assert load_checkpoint(f"{cfg.output_dir}/last.pt")["custom_count"] == 2

    resumed = CountingHook()
    train(cfg, resume="auto", hooks=[resumed])
    # the same checkpoint dict reached the hook: its own key and the trainer's
    assert resumed.loaded["custom_count"] == 2 and resumed.loaded["step"] == 2
    assert resumed.events[0] == "before_train@2"
    assert resumed.count == 5
    assert load_checkpoint(f"{cfg.output_dir}/last.pt")["custom_count"] == 5


def test_a_checkpoint_holds_the_state_of_the_step_it_saves(tiny_config):
    """Hooks given to train() run before the checkpoint hook, so step k's file has k counted."""
    cfg = tiny_config(
        "train.validate=false",
        "train.steps=3",
        "train.checkpoint_every=1",
        "train.keep_checkpoints=3",
    )
    train(cfg, hooks=[CountingHook()])
    for step in (1, 2, 3):
        state = load_checkpoint(f"{cfg.output_dir}/step_{step:08d}.pt")
        assert state["custom_count"] == state["step"] == step


def test_a_hooks_metrics_join_the_validation_log_line(tiny_config):
    cfg = tiny_config("train.validate=false", "train.steps=4", "train.val_every=2")
    train(cfg, hooks=[CountingHook()])
    lines = [json.loads(line) for line in open(f"{cfg.output_dir}/metrics.jsonl")]
    counted = {line["step"]: line["custom/count"] for line in lines if "custom/count" in line}
    assert counted == {2: 2.0, 4: 4.0}
    pseudo = [line for line in lines if "pseudo/gmm_miou" in line]
    assert [line["step"] for line in pseudo] == [2, 4]  # one line per validation, both in it
    assert all("custom/count" in line for line in pseudo)
