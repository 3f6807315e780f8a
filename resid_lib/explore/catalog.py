"""The catalog of runs under a root as one table."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import STAGES
from ..rundir import HEADLINE_KEYS, RunSummary


def runs_table(runs: list[RunSummary], root: str | Path) -> pd.DataFrame:
    """One row per run: ``run`` (path relative to ``root``), status, dataset, methods, stage states,
    the headline test metrics (NaN where the run has none yet), last update and the absolute ``path``."""
    root = Path(root)
    rows = []
    for r in runs:
        rel = r.path.relative_to(root) if r.path.is_relative_to(root) else r.path
        stages = " · ".join(f"{s} {r.stages[s]}" for s in STAGES if s in r.stages)
        rows.append({
            "run": "." if str(rel) == "." else str(rel),
            "status": r.status,
            "dataset": r.dataset,
            "encode": r.methods.get("encode", "-"),
            "quantize": r.methods.get("quantize", "-"),
            "stages": stages or "none run",
            **{k: r.metrics.get(k) for k in HEADLINE_KEYS},
            "updated": r.updated,
            "path": str(r.path),
        })
    frame = pd.DataFrame(rows, columns=["run", "status", "dataset", "encode", "quantize", "stages",
                                        *HEADLINE_KEYS, "updated", "path"])
    frame[list(HEADLINE_KEYS)] = frame[list(HEADLINE_KEYS)].apply(pd.to_numeric, errors="coerce")
    return frame
