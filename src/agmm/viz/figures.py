"""Figures without pyplot: ``matplotlib.figure.Figure`` renders with Agg, touches no global
backend state (safe in notebooks, threads and headless servers)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure


def new_figure(width: float, height: float):
    """A matplotlib Figure of ``width`` x ``height`` inches (not registered with pyplot)."""
    return Figure(figsize=(width, height))


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Saves ``fig`` as PNG at ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
