"""One colour per run, the same on every figure of a page."""
from __future__ import annotations

import plotly.colors

RUN_PALETTE = plotly.colors.qualitative.Plotly


def run_colors(runs: list[str]) -> dict[str, str]:
    """``{run: colour}`` in the given order, cycling through :data:`RUN_PALETTE`."""
    return {run: RUN_PALETTE[i % len(RUN_PALETTE)] for i, run in enumerate(dict.fromkeys(runs))}
