"""Two gloo processes under torchrun train like one: the same code path, identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from agmm.runtime import distributed
from agmm.runtime.checkpoint import load_checkpoint
from tests.engine.conftest import TINY


def test_helpers_work_without_a_process_group():
    assert not distributed.is_distributed()
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    value = torch.tensor([2.0])
    assert distributed.all_reduce_sum(value).item() == 2.0
    assert distributed.max_difference_across_ranks(torch.tensor([1.0, 2.0])) == 0.0
    distributed.barrier()
    distributed.cleanup()


def test_device_is_chosen_automatically_and_never_a_fixed_gpu(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    device = distributed.init_distributed("auto")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert device.type == expected
    assert distributed.init_distributed("cpu") == torch.device("cpu")


@pytest.mark.slow
def test_two_process_torchrun_on_cpu_ends_with_identical_weights(tmp_path):
    run_dir = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "agmm", "train", "--config", "synthetic/demo",
        *TINY, "train.batch_size=4", "train.steps=4", "train.val_every=2",
        "train.device=cpu", f"output_dir={run_dir}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["step"] == 4
    assert result["rank_weight_difference"] == 0.0
    assert 0.0 <= result["val/miou"] <= 1.0
    state = load_checkpoint(run_dir / "last.pt")
    assert state["step"] == 4 and state["config"]["train"]["batch_size"] == 4
