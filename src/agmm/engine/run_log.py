"""What a run writes as it trains: the progress bar, ``metrics.jsonl`` and TensorBoard scalars.

:class:`RunLogger` writes (main process only); :class:`LossWindow` sums the loss terms over the
steps between two log lines, averaged over the processes.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from agmm.config import Config
from agmm.runtime import distributed as dist_utils

TERMS = ("seg", "self", "weak", "con", "cls")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # quiet TensorBoard's optional TensorFlow import


class LossWindow:
    """Sums of the loss terms over the steps since the last log line (averaged over ranks)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(len(TERMS) + 1, device=self.device, dtype=torch.float64)
        self.steps = 0
        self.images = 0
        self.started = time.perf_counter()

    def add(self, loss: torch.Tensor, terms: dict, *, images: int) -> None:
        values = [loss.detach()] + [
            torch.as_tensor(terms.get(name, 0.0)).detach() for name in TERMS
        ]
        self.sums += torch.stack([v.to(self.device, torch.float64).reshape(()) for v in values])
        self.steps += 1
        self.images += images

    def compute_and_reset(self) -> dict:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        totals = torch.cat(
            [
                self.sums,
                torch.tensor([self.steps, self.images], device=self.device, dtype=torch.float64),
            ]
        )
        dist_utils.all_reduce_sum(totals)
        steps, images = totals[-2].item(), totals[-1].item()
        out = {"images_per_s": images / elapsed}
        if steps > 0:
            means = (totals[:-2] / steps).tolist()
            out.update(loss=means[0], **dict(zip(TERMS, means[1:])))
        self.reset()
        return out


class RunLogger:
    """Progress bar, TensorBoard scalars and ``metrics.jsonl`` (one JSON object per log line).

    Only the main process writes; on the others every method is a no-op. A resumed run
    (``start_step > 0``) first drops the lines logged after its checkpoint (they will be logged
    again), and continues the run's ``time`` and ``first_loss`` from the kept lines, so that the
    log of an interrupted run equals that of an uninterrupted one.
    """

    #: Loggers not yet closed; ``train`` closes them when a run fails.
    live: set[RunLogger] = set()

    def __init__(self, cfg: Config, output_dir: Path, *, enabled: bool, start_step: int) -> None:
        self.enabled = enabled
        self.first_loss = None
        self.last_loss = None
        self.rates: list[float] = []
        self.bar = self.writer = self.jsonl = None
        if not enabled:
            return

        output_dir.mkdir(parents=True, exist_ok=True)
        kept = _kept_log_lines(output_dir / "metrics.jsonl", start_step)
        self.first_loss = next((line["train/loss"] for line in kept if "train/loss" in line), None)
        elapsed = kept[-1].get("time", 0.0) if kept else 0.0
        with open(output_dir / "metrics.jsonl", "w") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in kept)
        self.jsonl = open(output_dir / "metrics.jsonl", "a")
        RunLogger.live.add(self)
        if cfg.train.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                log_dir=str(output_dir / "tensorboard"), purge_step=start_step or None
            )
        self.bar = tqdm(
            total=cfg.train.steps,
            initial=start_step,
            desc="train",
            unit="step",
            disable=not cfg.train.progress_bar,
            dynamic_ncols=True,
        )
        self.started = time.time() - elapsed

    def message(self, text: str) -> None:
        if self.enabled:
            (self.bar.write if self.bar is not None else print)(text)

    def advance(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def train(self, step: int, window: dict, *, lr: float, skipped: int) -> None:
        if "loss" in window:
            self.first_loss = window["loss"] if self.first_loss is None else self.first_loss
            self.last_loss = window["loss"]
        self.rates.append(window["images_per_s"])
        scalars = {f"train/{key}": value for key, value in window.items() if key != "images_per_s"}
        scalars.update(
            {"lr": lr, "images_per_s": window["images_per_s"], "train/skipped_steps": skipped}
        )
        self.scalars(step, scalars)
        if self.bar is not None:
            shown = {k: f"{window[k]:.3f}" for k in ("loss", *TERMS) if window.get(k)}
            shown.update(lr=f"{lr:.2e}", img_s=f"{window['images_per_s']:.1f}")
            if skipped:
                shown["skipped"] = str(skipped)
            self.bar.set_postfix(shown, refresh=False)
            self.advance(step)

    def scalars(self, step: int, values: dict) -> None:
        if not self.enabled or not values:
            return
        values = {
            k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))
        }
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
        self.jsonl.write(
            json.dumps({"step": step, "time": round(time.time() - self.started, 3), **values})
            + "\n"
        )
        self.jsonl.flush()
        if any(key.startswith(("val/", "pseudo/")) for key in values):
            shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items())
            self.message(f"step {step}: {shown}")

    def mean_images_per_s(self) -> float | None:
        rates = self.rates[1:] or self.rates  # the first window includes start-up
        return float(np.mean(rates)) if rates else None

    def close(self) -> None:
        RunLogger.live.discard(self)
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()


def _kept_log_lines(path: Path, start_step: int) -> list[dict]:
    """The ``metrics.jsonl`` lines of steps up to ``start_step`` (none for a new run)."""
    if start_step == 0 or not path.is_file():
        return []
    kept = []
    for text in path.read_text().splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if int(line.get("step", 0)) <= start_step:
            kept.append(line)
    return kept
