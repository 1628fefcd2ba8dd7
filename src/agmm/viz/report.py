"""A one-page, self-contained HTML report of a run: metrics, curves, pictures, config."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from agmm.errors import DataError
from agmm.viz.curves import plot_curves, read_log

PICTURE_LIMIT = 24
LOG_NAMES = ("metrics.jsonl", "log.jsonl", "train_log.jsonl")


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _format(value) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4f}"
    if value is None:
        return "–"
    return html.escape(str(value))


def _metrics_table(name: str, metrics: dict) -> str:
    """Scalars as a key/value table, ``per_class_iou`` as its own table; nested lists skipped."""
    rows = [
        f"<tr><td>{html.escape(key)}</td><td>{_format(value)}</td></tr>"
        for key, value in metrics.items()
        if not isinstance(value, dict | list)
    ]
    parts = [f"<h3>{html.escape(name)}</h3>"]
    if rows:
        parts.append("<table>" + "".join(rows) + "</table>")
    per_class = metrics.get("per_class_iou")
    if isinstance(per_class, dict) and per_class:
        cells = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{_format(v if v is None else 100 * v)}</td></tr>"
            for k, v in per_class.items()
        )
        parts.append(f"<table><tr><th>class</th><th>IoU %</th></tr>{cells}</table>")
    for key, value in metrics.items():
        if isinstance(value, dict) and key != "per_class_iou":
            parts.append(_metrics_table(f"{name}: {key}", value))
    return "\n".join(parts)


def _pictures(run_dir: Path, exclude: set[Path]) -> list[Path]:
    """PNG files in the run folder and its sub-folders (not TensorBoard's), newest layout first."""
    found = [
        p
        for p in sorted(run_dir.rglob("*.png"))
        if "tensorboard" not in p.parts and p.resolve() not in exclude
    ]
    return found[:PICTURE_LIMIT]


def write_report(
    run_dir: str | Path, *, out: str | Path | None = None, title: str | None = None
) -> Path:
    """Writes ``run_dir/report.html`` (or ``out``) and returns its path.

    Gathers: every ``*.json`` file at the top of ``run_dir`` (e.g. ``result.json``, eval metrics)
    as tables, the training log (``metrics.jsonl``) drawn as curves (also saved as
    ``curves.png`` beside the report), every PNG in the run folder (panels, t-SNE; at most 24),
    and ``config.yaml``. Images are embedded as base64, so the file can be mailed or moved alone.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: run folder does not exist")
    out = Path(out) if out else run_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    sections = []

    metrics_files = sorted(run_dir.glob("*.json"))
    if metrics_files:
        tables = []
        for path in metrics_files:
            try:
                content = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(content, dict):
                tables.append(_metrics_table(path.name, content))
        if tables:
            sections.append("<h2>Metrics</h2>\n" + "\n".join(tables))

    curves = None
    log = next((run_dir / name for name in LOG_NAMES if (run_dir / name).is_file()), None)
    if log is not None:
        records = read_log(log)
        if records:
            try:
                curves = plot_curves(records, out.parent / "curves.png", title=run_dir.name)
                sections.append("<h2>Training curves</h2>\n" + _img_tag(curves, "training curves"))
            except DataError:
                curves = None

    pictures = _pictures(run_dir, {curves.resolve()} if curves else set())
    if pictures:
        figures = "\n".join(
            f"<figure>{_img_tag(p, p.stem)}<figcaption>{html.escape(str(p.relative_to(run_dir)))}"
            "</figcaption></figure>"
            for p in pictures
        )
        sections.append(f"<h2>Pictures</h2>\n{figures}")

    config = run_dir / "config.yaml"
    if config.is_file():
        sections.append(f"<h2>Config</h2>\n<pre>{html.escape(config.read_text())}</pre>")
    if not sections:
        sections.append("<p>No metrics, training log or pictures found in this folder.</p>")

    title = title or f"AGMM++ run: {run_dir.name}"
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;"
        "padding:2px 8px;text-align:left}img{max-width:100%}figure{margin:1em 0}"
        "pre{background:#f6f6f6;padding:0.5em;overflow:auto}"
    )
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
    out.write_text(page)
    return out
