"""Training curves from the run log (paper Fig. 10): loss terms, segmentation and GMM mIoU."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

from agmm.errors import DataError
from agmm.viz.figures import new_figure, save_figure


def read_log(path: str | Path) -> list[dict]:
    """Records of a JSONL log (one JSON object per line, e.g. ``metrics.jsonl``); blank lines
    and a truncated last line (a run killed while writing) are skipped."""
    path = Path(path)
    records = []
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise DataError(f"{path}: cannot read training log ({error})") from error
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise DataError(f"{path}:{number}: not a JSON object ({error})") from error
    return records


def _flatten(record: dict, prefix: str = "") -> dict[str, float]:
    """{"terms": {"seg": 1}} -> {"terms/seg": 1.0}; non-numbers are dropped."""
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def group_series(records: Iterable[dict], step_key: str = "step") -> dict[str, dict]:
    """Splits the records into plot groups: ``{"loss": {name: (steps, values)}, "miou": ...}``.

    Keys containing "miou" go to "miou"; "loss" and the terms (``train/seg``, ``train/self``,
    ...) to "loss" (unless always 0: a switched-off term); ``lr`` to "lr". Time, throughput and
    counters are left out.
    """
    groups: dict[str, dict[str, tuple[list, list]]] = {"loss": {}, "miou": {}, "lr": {}}
    for index, record in enumerate(records):
        flat = _flatten(record)
        step = flat.pop(step_key, float(index))
        for name, value in flat.items():
            if not math.isfinite(value):
                continue
            lower = name.lower()
            if "miou" in lower:
                group = "miou"
            elif lower == "lr" or lower.endswith("/lr"):
                group = "lr"
            elif "loss" in lower or lower.startswith(("train/", "terms/")):
                if any(word in lower for word in ("skipped", "images", "time", "acc")):
                    continue
                group = "loss"
            else:
                continue
            steps, values = groups[group].setdefault(name, ([], []))
            steps.append(step)
            values.append(value)
    # a switched-off loss term logs 0 at every step: leave it out of the picture
    groups["loss"] = {n: s for n, s in groups["loss"].items() if any(v != 0 for v in s[1])}
    return {group: series for group, series in groups.items() if series}


def plot_curves(records, path: str | Path, *, title: str | None = None) -> Path:
    """Saves a PNG of the training curves from ``records`` (list of dicts) or a JSONL log path.

    One panel for the loss terms (log scale when positive), one for the mIoU series (e.g.
    ``val/miou``, ``pseudo/gmm_miou``, ``pseudo/seg_miou``) and one for the learning rate.
    """
    if isinstance(records, str | Path):
        records = read_log(records)
    groups = group_series(records)
    if not groups:
        raise DataError("no loss, mIoU or lr values in the training log to plot")
    titles = {"loss": "loss terms", "miou": "mIoU", "lr": "learning rate"}
    fig = new_figure(5 * len(groups), 3.6)
    axes = fig.subplots(1, len(groups), squeeze=False, sharex=True)
    for ax, (group, series) in zip(axes[0], groups.items()):
        for name, (steps, values) in sorted(series.items()):
            marker = "o" if len(values) < 20 else None
            total = name.split("/")[-1] == "loss"  # the weighted sum, drawn in black
            ax.plot(
                steps,
                values,
                label=name,
                marker=marker,
                markersize=3,
                linewidth=2.2 if total else 1.4,
                color="black" if total else None,
            )
        if group == "loss" and all(v > 0 for _, values in series.values() for v in values):
            ax.set_yscale("log")
        if group == "miou" and all(v <= 1 for _, values in series.values() for v in values):
            ax.set_ylim(0, 1)
        ax.set_title(titles[group])
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
