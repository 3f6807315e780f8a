"""What tells a good Semantic ID from a bad one, computed from the codes.

Every function takes ``codes``: an (n_items, L) integer array, row ``i`` the SID
of item ``i``. Entropies are in **bits** (log base 2), so ``H(c_l)`` compares
directly with ``log2 b_l``, the entropy of a codebook of size ``b_l`` used evenly.

- :func:`utilization`: ``|{c_l(i)}| / b_l``, the share of level ``l``'s codebook in use.
- :func:`entropy`: ``H(c_l) = -sum_v p_l(v) log2 p_l(v)`` with ``p_l(v)`` the share of items
  whose level-``l`` code is ``v``.
- :func:`conditional_entropy`: ``H(c_l | c_1..c_{l-1}) = H(c_1..c_l) - H(c_1..c_{l-1})``,
  how many bits the next code adds once its prefix is known (``H(c_1)`` at level 1).
- :func:`collision_rate`: share of items whose full code tuple is shared with another item.
- :func:`reconstruction_error`: ``sum_i ||x_i - x^_i||^2 / sum_i ||x_i - mean(x)||^2``.
- :func:`directional_coherence`: whether one code means one direction under every parent.
- :func:`history_target_overlap`: how often a user's history shares the target's codes.
- :func:`summarize`: all of the above as the ``diagnostics.json`` dictionary.

Embeddings are read in row chunks (:mod:`~resid_lib.quantize.chunks`) and summed in float64,
never copied whole.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import DataError
from .chunks import chunk_rows, row_chunks


def _as_codes(codes) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 2 or len(codes) == 0:
        raise DataError(f"codes: expected a non-empty (n_items, levels) array, got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0:
        raise DataError("codes: expected non-negative integers")
    return codes.astype(np.int64, copy=False)


def prefix_ids(codes: np.ndarray, level: int) -> np.ndarray:
    """(n,) int64 id of every item's prefix ``c_1..c_level`` (ids are dense, ``0..n_prefixes-1``)."""
    if level == 0:
        return np.zeros(len(codes), dtype=np.int64)
    _, inverse = np.unique(codes[:, :level], axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def _entropy_of_labels(labels: np.ndarray) -> float:
    counts = np.bincount(labels)
    p = counts[counts > 0] / len(labels)
    return float(-(p * np.log2(p)).sum())


def utilization(codes, codebook_sizes: Sequence[int] | None = None) -> list[float]:
    """Per level, distinct codes used divided by the codebook size ``b_l`` (default: max code + 1)."""
    codes = _as_codes(codes)
    sizes = _sizes(codes, codebook_sizes)
    return [len(np.unique(codes[:, l])) / sizes[l] for l in range(codes.shape[1])]


def entropy(codes) -> list[float]:
    """Per level, ``H(c_l)`` in bits."""
    codes = _as_codes(codes)
    return [_entropy_of_labels(codes[:, l]) for l in range(codes.shape[1])]


def conditional_entropy(codes) -> list[float]:
    """Per level, ``H(c_l | c_1..c_{l-1}) = H(c_1..c_l) - H(c_1..c_{l-1})`` in bits."""
    codes = _as_codes(codes)
    joint = [0.0] + [_entropy_of_labels(prefix_ids(codes, l)) for l in range(1, codes.shape[1] + 1)]
    return [joint[l + 1] - joint[l] for l in range(codes.shape[1])]


def collision_rate(codes) -> float:
    """Share of items whose whole code tuple equals another item's (0 when every SID is unique)."""
    codes = _as_codes(codes)
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.reshape(-1)] > 1).mean())


def reconstruction_error(X, X_hat) -> float:
    """Relative squared error ``sum ||x - x^||^2 / sum ||x - mean(x)||^2`` (0 = perfect, 1 = the mean).

    Args:
        X: (n, d) embeddings; X_hat: (n, d) the quantizer's reconstruction.
    """
    X, X_hat = np.asarray(X), np.asarray(X_hat)
    if X.shape != X_hat.shape:
        raise DataError(f"reconstruction has shape {X_hat.shape}, embeddings {X.shape}")
    rows = chunk_rows(X.shape[1])
    mean = sum(X[part].sum(axis=0, dtype=np.float64) for part in row_chunks(len(X), rows)) / len(X)
    total = error = 0.0
    for part in row_chunks(len(X), rows):
        x = X[part].astype(np.float64)
        error += float(((x - X_hat[part]) ** 2).sum())
        total += float(((x - mean) ** 2).sum())
    return error / total if total > 0 else 0.0


def directional_coherence(X, codes, level: int = 2) -> float:
    """Mean pairwise cosine of the centered child directions that share one code.

    A *parent* is a prefix ``c_1..c_{level-1}``, a *child* a prefix ``c_1..c_level``;
    centroids are the means of the embeddings of their items. The child direction is
    ``r = mu_child - mu_parent``. For every code value ``v`` at ``level`` that occurs
    under at least two parents, take the unit directions ``u_1..u_m`` of the children
    with code ``v`` and their mean pairwise cosine
    ``(||sum_j u_j||^2 - m) / (m (m - 1))``; the result is the unweighted mean over
    such ``v``. Children identical to their parent (zero direction) are skipped.
    Near 0 when a code means unrelated directions under different parents (local
    indices), clearly positive when it means one shared direction (GAOQ).

    Args:
        X: (n, d) embeddings; codes: (n, L) with ``L >= level >= 2``.
    Returns:
        The mean cosine, or NaN when no code occurs under two parents.
    """
    codes = _as_codes(codes)
    X = np.asarray(X)
    if len(X) != len(codes):
        raise DataError(f"embeddings have {len(X)} rows, codes {len(codes)}")
    if not 2 <= level <= codes.shape[1]:
        raise DataError(f"directional coherence needs 2 <= level <= {codes.shape[1]}, got {level}")
    parent = prefix_ids(codes, level - 1)
    child = prefix_ids(codes, level)
    mu_parent = _group_means(X, parent)
    mu_child = _group_means(X, child)
    first = np.unique(child, return_index=True)[1]  # one item per child, in child-id order
    directions = mu_child - mu_parent[parent[first]]
    norms = np.linalg.norm(directions, axis=1)
    keep = norms > 1e-12 * max(1.0, float(X.max()), -float(X.min()))
    units = directions[keep] / norms[keep, None]
    child_code = codes[first, level - 1][keep]
    cosines = []
    for v in np.unique(child_code):
        u = units[child_code == v]
        m = len(u)
        if m >= 2:
            s = u.sum(axis=0)
            cosines.append((float(s @ s) - m) / (m * (m - 1)))
    return float(np.mean(cosines)) if cosines else float("nan")


def _group_means(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(n_groups, d) float64 mean of the rows of every group, summed in row chunks."""
    sums = torch.zeros(int(groups.max()) + 1, X.shape[1], dtype=torch.float64)
    index = torch.from_numpy(groups)
    for part in row_chunks(len(X), chunk_rows(2 * X.shape[1])):
        sums.index_add_(0, index[part], torch.from_numpy(np.asarray(X[part], dtype=np.float64)))
    return sums.numpy() / np.bincount(groups)[:, None]


def history_target_overlap(codes, histories: Sequence[np.ndarray], targets) -> list[dict[str, float]]:
    """Per level, how much of a user's history shares the target item's codes.

    For user ``u`` with history items ``h_1..h_m`` (``m >= 1``) and target ``t``:

    - ``code_share_l(u) = |{j : c_l(h_j) = c_l(t)}| / m`` (same code at level ``l``),
    - ``prefix_share_l(u) = |{j : c_1..c_l(h_j) = c_1..c_l(t)}| / m`` (same prefix up to ``l``),

    each averaged over users with a non-empty history. ``prefix_share`` at the last
    level is the share of history items that are the target itself (repeats).

    Args:
        codes: (n_items, L); histories: per user, int item indices; targets: (n_users,) item indices.
    Returns:
        ``[{"level": l, "code_share": ..., "prefix_share": ...}]`` for ``l = 1..L``.
    """
    codes = _as_codes(codes)
    targets = np.asarray(targets, dtype=np.int64)
    if len(histories) != len(targets):
        raise DataError(f"{len(histories)} histories but {len(targets)} targets")
    lengths = np.array([len(h) for h in histories], dtype=np.int64)
    users = np.flatnonzero(lengths > 0)
    if len(users) == 0:
        raise DataError("history/target overlap needs at least one user with a non-empty history")
    flat = np.concatenate([np.asarray(histories[u], dtype=np.int64) for u in users])
    owner = np.repeat(np.arange(len(users)), lengths[users])
    target_of = targets[users][owner]
    same_prefix = np.ones(len(flat), dtype=bool)
    out = []
    for l in range(codes.shape[1]):
        same_code = codes[flat, l] == codes[target_of, l]
        same_prefix &= same_code
        out.append({
            "level": l + 1,
            "code_share": float(np.mean(np.bincount(owner, same_code, len(users)) / lengths[users])),
            "prefix_share": float(np.mean(np.bincount(owner, same_prefix, len(users)) / lengths[users])),
        })
    return out


def _sizes(codes: np.ndarray, codebook_sizes: Sequence[int] | None) -> list[int]:
    observed = (codes.max(axis=0) + 1).tolist()
    if codebook_sizes is None:
        return observed
    sizes = list(codebook_sizes)
    if len(sizes) != codes.shape[1]:
        raise DataError(f"{len(sizes)} codebook sizes for {codes.shape[1]} levels")
    for l, (size, seen) in enumerate(zip(sizes, observed)):
        if size < seen:
            raise DataError(f"level {l + 1}: code {seen - 1} exceeds the codebook size {size}")
    return sizes


def summarize(
    codes,
    *,
    raw_codes=None,
    codebook_sizes: Sequence[int] | None = None,
    embeddings=None,
    reconstruction=None,
    histories: Sequence[np.ndarray] | None = None,
    targets=None,
    extra: dict | None = None,
) -> dict:
    """The ``diagnostics.json`` dictionary.

    Args:
        codes: (n, L') final SIDs (unique rows; may end with a dedup level).
        raw_codes: (n, L) the quantizer's codes before dedup (default: ``codes``).
        codebook_sizes: the quantizer's ``L`` codebook sizes (default: max code + 1 per level);
            a dedup level's size is its largest code + 1.
        embeddings: (n, d) the quantized embeddings, for directional coherence (and
            reconstruction error together with ``reconstruction``).
        reconstruction: (n, d) the quantizer's reconstruction of ``embeddings``, when it defines one.
        histories, targets: user histories and their target items, for the overlap.
        extra: merged into the result (method name, timings, ...).
    Returns:
        ``{"n_items", "levels", "sid_length", "dedup_level", "per_level": [{"level", "codebook_size",
        "used", "utilization", "entropy", "max_entropy", "conditional_entropy", "dedup"}],
        "collisions": {"n_collided", "rate", "max_group"}, "reconstruction_error",
        "directional_coherence", "history_target_overlap"}``; unavailable measures are None.
    """
    codes = _as_codes(codes)
    raw = codes if raw_codes is None else _as_codes(raw_codes)
    if len(raw) != len(codes):
        raise DataError(f"raw codes have {len(raw)} rows, final codes {len(codes)}")
    n_levels = raw.shape[1]
    sizes = _sizes(raw, codebook_sizes) + (codes.max(axis=0)[n_levels:] + 1).tolist()
    used = [int(len(np.unique(codes[:, l]))) for l in range(codes.shape[1])]
    ent = entropy(codes)
    cond = conditional_entropy(codes)
    per_level = [
        {
            "level": l + 1,
            "codebook_size": int(sizes[l]),
            "used": used[l],
            "utilization": used[l] / sizes[l],
            "entropy": ent[l],
            "max_entropy": float(np.log2(sizes[l])),
            "conditional_entropy": cond[l],
            "dedup": l >= n_levels,
        }
        for l in range(codes.shape[1])
    ]
    group_sizes = np.unique(raw, axis=0, return_counts=True)[1]
    rate = collision_rate(raw)
    out = {
        "n_items": int(len(codes)),
        "levels": n_levels,
        "sid_length": int(codes.shape[1]),
        "dedup_level": codes.shape[1] > n_levels,
        "per_level": per_level,
        "collisions": {"n_collided": int(round(rate * len(raw))), "rate": rate, "max_group": int(group_sizes.max())},
        "reconstruction_error": None,
        "directional_coherence": None,
        "history_target_overlap": None,
    }
    if embeddings is not None and reconstruction is not None:
        out["reconstruction_error"] = reconstruction_error(embeddings, reconstruction)
    if embeddings is not None and n_levels >= 2:
        value = directional_coherence(embeddings, raw, level=2)
        out["directional_coherence"] = None if np.isnan(value) else value
    if histories is not None and targets is not None and len(targets):
        out["history_target_overlap"] = history_target_overlap(codes, histories, targets)
    if extra:
        out.update(extra)
    return out
