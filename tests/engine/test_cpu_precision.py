"""train.amp on CPU: bf16 autocast where the CPU computes it natively, float32 otherwise."""

from __future__ import annotations

import pytest
import torch

from agmm.config import load_config
from agmm.engine import train as train_mod
from agmm.errors import ConfigError
from agmm.gmm.build import build_loss
from agmm.models.build import build_segmenter


def _cfg(*overrides: str):
    return load_config("synthetic/demo", list(overrides))


def test_amp_off_from_the_command_line_is_float32():
    cfg = _cfg("train.amp=off")  # YAML reads a bare off as false
    assert cfg.train.amp == "off"
    assert train_mod._amp_dtype(cfg, torch.device("cpu")) is None


@pytest.mark.parametrize("native", [True, False])
def test_auto_picks_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    monkeypatch.setattr(train_mod, "cpu_has_native_bf16", lambda: native)
    expected = torch.bfloat16 if native else None
    assert train_mod._amp_dtype(_cfg("train.amp=auto"), torch.device("cpu")) is expected
    assert train_mod._amp_dtype(_cfg("train.amp=bf16"), torch.device("cpu")) is torch.bfloat16


def test_fp16_on_cpu_is_refused():
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        train_mod._amp_dtype(_cfg("train.amp=fp16"), torch.device("cpu"))


def test_bf16_cpu_step_is_finite_and_close_to_float32():
    """One forward + loss in bf16 autocast (channels_last) against float32: the loss agrees within
    5 % and every gradient is finite. The GMM inside runs in float32 either way."""
    cfg = _cfg()
    torch.manual_seed(0)
    model = build_segmenter(cfg, 4).train()
    loss_fn = build_loss(cfg, model, 4)
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    labels = torch.full((2, 64, 64), 255)
    labels[:, 10:14, 10:14], labels[:, 40:44, 30:34], labels[:, 50:52, 5:9] = 0, 1, 2

    def loss_value(dtype, channels_last: bool) -> torch.Tensor:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=fmt)
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(images.contiguous(memory_format=fmt))
            losses = loss_fn(out["features"], out["logits"], labels)
        losses["loss"].backward()
        assert losses["gmm_new"].dtype == torch.float32
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        return losses["loss"].detach()

    torch.manual_seed(2)
    reference = loss_value(None, False)
    torch.manual_seed(2)
    bf16 = loss_value(torch.bfloat16, True)
    assert torch.isfinite(bf16)
    assert abs(bf16.item() - reference.item()) <= 0.05 * abs(reference.item())


@pytest.mark.parametrize(
    "setting,device,expected",
    [("auto", "cpu", True), ("auto", "cuda", False), (True, "cuda", True), (False, "cpu", False)],
)
def test_channels_last_auto_is_on_for_cpus_only(setting, device, expected):
    from agmm.engine.trainer import uses_channels_last

    assert uses_channels_last(setting, torch.device(device)) is expected


def test_channels_last_setting_parses_auto_and_booleans():
    assert _cfg().train.channels_last == "auto"  # the default
    assert _cfg("train.channels_last=false").train.channels_last is False
    assert _cfg("train.channels_last=true").train.channels_last is True
    with pytest.raises(ConfigError, match="train.channels_last"):
        _cfg("train.channels_last=maybe")
