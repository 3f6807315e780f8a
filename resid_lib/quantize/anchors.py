"""Shared anchor directions for GAOQ's aligned levels, and the Hungarian matching against them.

Three ways to get ``g`` unit anchors in ``d`` dimensions (rows of a ``(g, d)`` array):

- :func:`random_anchors` -- the paper's: QR decomposition of a seeded Gaussian
  ``d x g`` matrix, so the anchors are orthonormal (needs ``g <= d``).
- :func:`separated_anchors` -- the paper's alternative when ``g > d``: unit vectors
  pushed apart on the sphere by gradient descent on a soft maximum of their pairwise
  cosines (a smoothed Tammes problem), so no two anchors point the same way.
- :func:`learned_anchors` -- data-driven (this project's option, see its docstring).

:func:`match_codes` assigns every parent's children to distinct anchors by maximum
total cosine (``scipy.optimize.linear_sum_assignment``).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ..device import single_thread_on_cpu
from ..errors import ConfigError
from .chunks import chunk_rows, row_chunks, tile_mm
from .kmeans import balanced_kmeans

#: sharpness of the soft maximum over pairwise cosines in :func:`separated_anchors`
_SHARPNESS = 30.0


def random_anchors(d: int, g: int, *, seed: int = 0) -> np.ndarray:
    """(g, d) orthonormal anchors: Q of the QR decomposition of a seeded Gaussian (d, g) matrix."""
    if g > d:
        raise ConfigError(f"{g} orthonormal anchors need at least {g} dimensions, the embeddings have {d}")
    gauss = np.random.default_rng(seed).standard_normal((d, g))
    q, r = np.linalg.qr(gauss)
    q = q * np.sign(np.diag(r))[None, :]  # unique QR: positive diagonal of R
    return np.ascontiguousarray(q.T, dtype=np.float32)


def separated_anchors(
    d: int, g: int, *, seed: int = 0, init: np.ndarray | None = None, n_steps: int = 500
) -> np.ndarray:
    """(g, d) unit anchors with maximal angular separation, for any g (also g > d).

    Minimises ``(1/s) log sum_{i != j} exp(s cos(a_i, a_j))`` (a soft maximum of the pairwise
    cosines, ``s = _SHARPNESS``) by Adam on the sphere from a seeded Gaussian start, or from
    ``init`` (g, d). With ``g <= d`` the optimum is an orthonormal set.
    """
    with single_thread_on_cpu("cpu"):
        return _spread_on_sphere(d, g, seed, init, n_steps)


def _spread_on_sphere(d: int, g: int, seed: int, init: np.ndarray | None, n_steps: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    a = torch.as_tensor(init, dtype=torch.float64).clone() if init is not None else torch.randn(g, d, generator=gen, dtype=torch.float64)
    a = torch.nn.functional.normalize(a, dim=1).requires_grad_(True)
    opt = torch.optim.Adam([a], lr=0.02)
    off = ~torch.eye(g, dtype=torch.bool)
    for _ in range(n_steps):
        u = torch.nn.functional.normalize(a, dim=1)
        cos = u @ u.T
        loss = torch.logsumexp(_SHARPNESS * cos[off], dim=0) / _SHARPNESS
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            a.copy_(torch.nn.functional.normalize(a, dim=1))
    return a.detach().numpy().astype(np.float32)


def make_anchors(d: int, g: int, *, seed: int, allow_fallback: bool, setting: str) -> np.ndarray:
    """Orthonormal anchors when g <= d, else near-orthogonal ones if allowed (ConfigError otherwise)."""
    if g <= d:
        return random_anchors(d, g, seed=seed)
    if not allow_fallback:
        raise ConfigError(
            f"{setting}: {g} anchors exceed the embedding dimension {d}, so they cannot be orthonormal; "
            "allow the near-orthogonal fallback (anchor_fallback=True) or use fewer anchors"
        )
    return separated_anchors(d, g, seed=seed)


def match_codes(residuals: torch.Tensor, anchors: torch.Tensor) -> np.ndarray:
    """Hungarian matching of every parent's children to distinct anchors, maximising total cosine.

    Parents are matched a chunk at a time, so the cosines held stay bounded.

    Args:
        residuals: (P, b, d) child centroids centered on their parent (``mu_j - mu_parent``).
        anchors: (g, d) with g >= b.
    Returns:
        (P, b) int64 anchor index of every child; distinct within each parent.
    """
    P, b, d = residuals.shape
    unit_anchors = torch.nn.functional.normalize(anchors.float(), dim=-1)
    codes = np.empty((P, b), dtype=np.int64)
    for part in row_chunks(P, chunk_rows(b * len(anchors))):
        unit = torch.nn.functional.normalize(residuals[part].float(), dim=-1).reshape(-1, d)
        cos = tile_mm(unit, unit_anchors).reshape(-1, b, len(anchors)).cpu().double().numpy()  # (p, b, g)
        for p in range(cos.shape[0]):
            rows, cols = linear_sum_assignment(cos[p], maximize=True)
            codes[part.start + p, rows] = cols
    return codes


def learned_anchors(residuals: torch.Tensor, g: int, *, seed: int = 0, allow_fallback: bool = True, n_rounds: int = 10) -> np.ndarray:
    """(g, d) anchors learned from the children of one level (this project's data-driven option).

    Why: with random anchors every cosine between a child direction and an anchor is about
    ``+-1/sqrt(d)``, so in high dimensions the differences the Hungarian matching decides on
    are as small as the noise in the child directions, and the same shared direction can
    get different codes under different parents. Here the anchors are put on the directions
    the children actually share, so each child has one clearly best anchor.

    How: the matching scores a frame of anchors by ``sum_parents sum_children cos(r, a_code)``.
    Start from balanced spherical k-means of the pooled unit child directions into ``g``
    groups (with g = b the matching hands every anchor exactly one child per parent, hence
    the balance), then alternate (a) Hungarian matching per parent and (b) the best
    orthonormal frame for that matching, the orthogonal Procrustes solution
    ``A = U V^T`` of ``M = U S V^T`` where ``M[a]`` sums the unit directions matched to ``a``.
    Both steps increase the score, so the alternation stops at a fixed point. When g > d
    (no orthonormal frame exists) the k-means directions are spread apart with
    :func:`separated_anchors` instead and kept fixed.

    Args:
        residuals: (P, b, d) child centroids centered on their parents.
        g: number of anchors, >= b.
    """
    P, b, d = residuals.shape
    if g > d and not allow_fallback:
        raise ConfigError(
            f"learned anchors: {g} anchors exceed the embedding dimension {d}; allow the "
            "near-orthogonal fallback (anchor_fallback=True) or use fewer anchors"
        )
    unit = torch.nn.functional.normalize(residuals.float().reshape(P * b, d), dim=1)
    centers, _ = balanced_kmeans(unit, g, seed=seed)
    if g > d:
        return separated_anchors(d, g, seed=seed, init=centers.cpu().numpy())
    anchors = _procrustes(centers.cpu().double())
    unit_np = unit.cpu().double().reshape(P, b, d)
    codes = None
    for _ in range(n_rounds):
        new = match_codes(unit_np, anchors)
        if codes is not None and np.array_equal(new, codes):
            break
        codes = new
        sums = torch.zeros(g, d, dtype=torch.float64).index_add_(0, torch.as_tensor(codes.reshape(-1)), unit_np.reshape(P * b, d))
        anchors = _procrustes(sums)
    return anchors.numpy().astype(np.float32)


def _procrustes(M: torch.Tensor) -> torch.Tensor:
    """The orthonormal (g, d) frame closest to M (g <= d): U V^T from the SVD M = U S V^T."""
    u, _, vt = torch.linalg.svd(M, full_matrices=False)
    return u @ vt
