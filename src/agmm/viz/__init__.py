"""Pictures of what the GMM did: panels (Fig. 7-8), t-SNE (Fig. 11), curves (Fig. 10), report.

matplotlib runs with the Agg backend (no display needed).
"""

from agmm.viz.curves import plot_curves, read_log
from agmm.viz.panels import colorize, gmm_heatmaps, gmm_rgb, panel_rows, save_panels
from agmm.viz.report import write_report
from agmm.viz.run import draw_run_pictures
from agmm.viz.tsne import plot_tsne

__all__ = [
    "colorize",
    "draw_run_pictures",
    "gmm_heatmaps",
    "gmm_rgb",
    "panel_rows",
    "plot_curves",
    "plot_tsne",
    "read_log",
    "save_panels",
    "write_report",
]
