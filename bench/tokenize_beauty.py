"""Tokenization on Amazon Beauty: GAOQ vs RQ-VAE vs GAOQ on k-means-constrained, and every quantizer's diagnostics.

Tokenizes, in one process and on the same threads, with every quantizer through the
quantize stage's own code path: GAOQ (this project's torch balanced k-means), the same
GAOQ with its balanced clusterings done by ``k-means-constrained``
(``KMeansConstrained(size_min=floor(n/k), size_max=ceil(n/k))``, the package the official
ReSID code uses; one initialisation and as many iterations as GAOQ's k-means), RQ-VAE
(TIGER's tokenizer, this project's defaults), GAOQ with learned anchors, hierarchical
k-means, residual k-means plain and balanced, and PQ. Prints the diagnostics table
(``resid_lib.quantize.diagnostics``: collisions, per-level utilization and entropy,
reconstruction error, directional coherence, history/target overlap on the test split:
level-1 code, level-2 code and level-2 prefix share), then the fit + encode wall time of
GAOQ on k-means-constrained and of RQ-VAE as ratios to GAOQ's (the paper: RQ-VAE 4.4x).

Embeddings: ``RUN_DIR/encode/item_embeddings.npy`` when a path is given, else a
stand-in built from the Beauty catalog (concatenated random per-field embedding
tables for item_id, brand, cat_l1, cat_l2, cat_l3 plus noise, 5 x 128 = 640 dims).
The stand-in has the shape and the field structure of FAMAE's item vectors but no
collaborative signal, so its diagnostics describe the quantizers, not ReSID's SIDs.

    .venv/bin/python bench/tokenize_beauty.py [EMBEDDINGS.npy] [--rqvae-epochs N] [--skip-kmc] [--threads N]
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resid_lib.data.dataset import Dataset  # noqa: E402
from resid_lib.data.readers import read_dataset  # noqa: E402
from resid_lib.data.split import leave_one_out  # noqa: E402
from resid_lib.device import resolve_device  # noqa: E402
from resid_lib.io import write_json  # noqa: E402
from resid_lib.quantize import gaoq as gaoq_module  # noqa: E402
from resid_lib.quantize import make_quantizer  # noqa: E402
from resid_lib.quantize import spread as spread_module  # noqa: E402
from resid_lib.quantize.config import QuantizeConfig  # noqa: E402
from resid_lib.quantize.stage import quantize_embeddings  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon2014-beauty"
RESULTS = ROOT / "bench" / "results" / "tokenize_beauty.json"
STANDIN_FIELDS = ("brand", "cat_l1", "cat_l2", "cat_l3")


def standin_embeddings(dataset: Dataset, dim: int = 128, seed: int = 0) -> np.ndarray:
    """(n_items, 5 * dim): per-field random tables for item_id, brand, cat_l1..l3, concatenated, plus noise."""
    rng = np.random.default_rng(seed)
    blocks = [rng.normal(scale=0.5, size=(dataset.n_items, dim))]
    for name in STANDIN_FIELDS:
        table = rng.normal(size=(dataset.cardinality(name), dim))
        blocks.append(table[dataset.codes(name)])
    X = np.concatenate(blocks, axis=1) + rng.normal(scale=0.1, size=(dataset.n_items, dim * (1 + len(STANDIN_FIELDS))))
    return (X / np.sqrt(dim)).astype(np.float32)


# ------------------------------------------------- GAOQ on k-means-constrained


def _kmc_labels(X: np.ndarray, k: int, n_iter: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from k_means_constrained import KMeansConstrained

    n = len(X)
    km = KMeansConstrained(n_clusters=k, size_min=n // k, size_max=-(-n // k), n_init=1, max_iter=n_iter,
                           random_state=seed).fit(X)
    return km.cluster_centers_.astype(np.float32), km.labels_.astype(np.int64)


def kmc_balanced_kmeans(X: torch.Tensor, k: int, *, n_iter: int = 30, seed: int = 0, chunk_size=None):
    """Drop-in for ``balanced_kmeans`` backed by k-means-constrained."""
    centroids, labels = _kmc_labels(X.detach().cpu().double().numpy(), k, n_iter, seed)
    return torch.from_numpy(centroids).to(X.device), torch.from_numpy(labels).to(X.device)


def kmc_kmeans_groups(X: torch.Tensor, index: torch.Tensor, k: int, *, balanced: bool = False, n_iter: int = 30,
                      seed=0, chunk_size=None):
    """Drop-in for ``kmeans_groups`` (balanced): one k-means-constrained problem per group, one after another."""
    P, m = index.shape
    centroids = torch.empty(P, k, X.shape[1], dtype=X.dtype)
    labels = torch.full((P, m), -1, dtype=torch.long)
    for p in range(P):
        rows = index[p][index[p] >= 0]
        state = int(np.random.SeedSequence(seed[p] if isinstance(seed, list) else seed).generate_state(1)[0])
        c, lab = _kmc_labels(X[rows].detach().cpu().double().numpy(), k, n_iter, state)
        centroids[p], labels[p, : len(rows)] = torch.from_numpy(c), torch.from_numpy(lab)
    return centroids.to(X.device), labels.to(X.device)


@contextlib.contextmanager
def gaoq_on_kmeans_constrained():
    """GAOQ exactly as it is, with its balanced clusterings (level 1 and per parent) done by k-means-constrained."""
    patches = [(gaoq_module, "balanced_kmeans", kmc_balanced_kmeans), (spread_module, "kmeans_groups", kmc_kmeans_groups)]
    missing = [f"{module.__name__}.{name}" for module, name, _ in patches if not hasattr(module, name)]
    if missing:
        raise RuntimeError(f"GAOQ's clusterings moved: {', '.join(missing)} not found")
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, fn in patches:
        setattr(module, name, fn)
    try:
        yield
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)


# ---------------------------------------------------------------- the bench


def diagnostics_row(name: str, diag: dict) -> str:
    per = diag["per_level"]
    util = "/".join(f"{p['utilization']:.2f}" for p in per if not p["dedup"])
    ent = "/".join(f"{p['entropy']:.1f}:{p['max_entropy']:.1f}" for p in per if not p["dedup"])
    cond = "/".join(f"{p['conditional_entropy']:.2f}" for p in per)
    overlap = diag["history_target_overlap"]
    # level-2 code share depends on what a code means across parents; prefix shares only on the partition
    shares = f"{overlap[0]['code_share']:.3f}/{overlap[1]['code_share']:.3f}/{overlap[1]['prefix_share']:.3f}" if overlap else "-"
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    return (f"{name:<18}{diag['seconds']['fit'] + diag['seconds']['encode']:>8.1f}{diag['sid_length']:>4}"
            f"{diag['collisions']['rate']:>8.2%}{diag['collisions']['max_group']:>5}  {util:<16}{ent:<24}{cond:<24}"
            f"{fmt(diag['reconstruction_error']):>7}{fmt(diag['directional_coherence']):>8}  {shares}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("embeddings", nargs="?", type=Path, help="RUN_DIR/encode/item_embeddings.npy (default: stand-in)")
    parser.add_argument("--rqvae-epochs", type=int, default=QuantizeConfig.epochs)
    parser.add_argument("--skip-kmc", action="store_true", help="leave out GAOQ on k-means-constrained")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if not BEAUTY.is_dir():
        print(f"skip: {BEAUTY} not found (the real datasets live in ../shared/data)")
        return 0
    torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    dataset = read_dataset("s3rec", BEAUTY)
    if args.embeddings is not None:
        X = np.load(args.embeddings).astype(np.float32)
        source = str(args.embeddings)
    else:
        X = standin_embeddings(dataset)
        source = "stand-in: random field tables (item_id, brand, cat_l1..l3) concatenated + noise, not FAMAE"
    print(f"Beauty: {dataset.n_items:,} items x {X.shape[1]} dims ({source}); device {device}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    base = QuantizeConfig(epochs=args.rqvae_epochs)
    make = lambda method, **kw: make_quantizer(QuantizeConfig(**{**vars(base), "method": method, **kw}),
                                               seed=args.seed, device=device)

    # warm-up on 1,000 rows so one-time library start-up is not charged to the first method timed
    make("gaoq", branching=[4, 4]).fit(X[:1000])
    make("rqvae", epochs=1).fit(X[:1000])

    # every quantizer through the stage's own path; fit + encode seconds come from its diagnostics
    split = leave_one_out(dataset)
    variants = {
        "gaoq": {"method": "gaoq"},
        "gaoq-kmc": {"method": "gaoq"},
        "rqvae": {"method": "rqvae"},
        "gaoq-learned": {"method": "gaoq", "anchors": "learned"},
        "hkmeans": {"method": "hkmeans"},
        "rqkmeans": {"method": "rqkmeans"},
        "rqkmeans-balanced": {"method": "rqkmeans", "balanced": True},
        "pq": {"method": "pq"},
    }
    if args.skip_kmc:
        del variants["gaoq-kmc"]
    print(f"\n{'quantizer':<18}{'sec':>8}{'len':>4}{'collide':>8}{'max':>5}  {'utilization':<16}{'H:log2 b':<24}"
          f"{'H(c_l|c<l)':<24}{'recon':>7}{'coher':>8}  overlap c1/c2/c1c2")
    diagnostics, timings = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in variants.items():
            quantizer = make(**overrides)
            backend = gaoq_on_kmeans_constrained() if name == "gaoq-kmc" else contextlib.nullcontext()
            with backend:
                diag = quantize_embeddings(quantizer, X, Path(tmp) / name, dataset=dataset, eval_set=split.test)
            diagnostics[name] = diag
            timings[name] = diag["seconds"]["fit"] + diag["seconds"]["encode"]
            print(diagnostics_row(name, diag), flush=True)

    print(f"\ntokenization wall time (fit + encode), one run, {torch.get_num_threads()} thread(s):")
    print(f"  GAOQ                          {timings['gaoq']:8.1f} s")
    if "gaoq-kmc" in timings:
        print(f"  GAOQ on k-means-constrained   {timings['gaoq-kmc']:8.1f} s   {timings['gaoq-kmc'] / timings['gaoq']:6.1f}x GAOQ")
    print(f"  RQ-VAE ({args.rqvae_epochs} epochs)           {timings['rqvae']:8.1f} s   "
          f"{timings['rqvae'] / timings['gaoq']:6.1f}x GAOQ   (paper: 4.4x; aim 20x)")
    write_json(RESULTS, {
        "items": dataset.n_items, "dims": X.shape[1], "embeddings": source, "device": device,
        "threads": torch.get_num_threads(), "rqvae_epochs": args.rqvae_epochs,
        "seconds": timings,
        "ratios_to_gaoq": {k: v / timings["gaoq"] for k, v in timings.items() if k != "gaoq"},
        "paper": {"rqvae_over_gaoq": 4.4},
        "diagnostics": diagnostics,
    })
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
