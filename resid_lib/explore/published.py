"""Published results on amazon2014-beauty (leave-one-out, full ranking), with their sources.

Copied from the table in the shared data README; the ablation views and benchmarks
put the project's own numbers beside these.
"""
from __future__ import annotations

import pandas as pd

PUBLISHED_DATASET = "amazon2014-beauty"

_ROWS = [
    # method, R@5, R@10, N@5, N@10, source
    ("SASRec", 0.0387, 0.0605, 0.0249, 0.0318, "TIGER paper (NeurIPS 2023)"),
    ("S3-Rec", 0.0387, 0.0647, 0.0244, 0.0327, "TIGER paper (NeurIPS 2023)"),
    ("TIGER (text + RQ-VAE)", 0.0454, 0.0648, 0.0321, 0.0384, "TIGER paper (NeurIPS 2023)"),
    ("GRID residual k-means", 0.0422, 0.0639, 0.0277, 0.0347, "GRID paper (2025)"),
    ("LETTER-TIGER", 0.0431, 0.0672, 0.0286, 0.0364, "LETTER paper (CIKM 2024)"),
    ("TIGER, residual k-means (independent rerun)", 0.0465, 0.0698, 0.0310, 0.0385, "RecBoard benchmark"),
    ("RPG (OPQ, long SIDs)", 0.0550, 0.0809, 0.0381, 0.0464, "RPG paper (KDD 2025)"),
]


def published_results() -> pd.DataFrame:
    """``method, recall@5, recall@10, ndcg@5, ndcg@10, source`` on :data:`PUBLISHED_DATASET`."""
    return pd.DataFrame(_ROWS, columns=["method", "recall@5", "recall@10", "ndcg@5", "ndcg@10", "source"])
