"""Plots: gate activity over time, loss curves and matrices, written as PNG files.

matplotlib is imported only when a plot is drawn, so importing this package stays cheap.
"""

from lstmkit.viz.plots import (
    LinePanel,
    plot_gates,
    plot_heatmap,
    plot_loss_curves,
    select_units,
    to_numpy,
)

__all__ = [
    "LinePanel",
    "plot_gates",
    "plot_heatmap",
    "plot_loss_curves",
    "select_units",
    "to_numpy",
]
