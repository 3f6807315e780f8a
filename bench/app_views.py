"""App responsiveness on an Amazon-Beauty-sized run: every page timed with Streamlit's AppTest.

Builds, in a temporary folder, a run directory over amazon2014-beauty (12,101 items,
22,363 users) holding what the stages write, at the paper's sizes: 640-dim item
vectors (item id + 4 categorical fields, 128 dims each), SIDs of shape 32 x 40 plus
the derived last level, the tree and diagnostics computed by ``resid_lib``, a
64-user attention sample (2 layers x 4 heads x 32 positions), 20-epoch histories,
generate metrics and an ablation table. The same is built over the 300-item demo
world as the reference.

For every page it measures the first load (empty caches: reading, joining and,
on the Embeddings page, a 5,000-item UMAP) and a rerun (what a click costs once
the loads are cached), and prints both beside the reference page's first load.

    .venv/bin/python bench/app_views.py
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resid_lib.config import load_config  # noqa: E402
from resid_lib.data.dataset import Dataset  # noqa: E402
from resid_lib.data.demo import make_demo_dataset  # noqa: E402
from resid_lib.data.readers import read_dataset  # noqa: E402
from resid_lib.data.split import leave_one_out, pad_right_aligned  # noqa: E402
from resid_lib.encode.attention import AttentionSample  # noqa: E402
from resid_lib.io import save_npy, write_json, write_parquet  # noqa: E402
from resid_lib.quantize.base import dedup_codes  # noqa: E402
from resid_lib.quantize.diagnostics import summarize  # noqa: E402
from resid_lib.quantize.tree import tree_frame, write_sids  # noqa: E402
from resid_lib.rundir import HEADLINE_KEYS, RunDir  # noqa: E402

BEAUTY = ROOT.parent / "shared" / "data" / "amazon2014-beauty"
RESULTS = ROOT / "bench" / "results" / "app_views.json"
APP = ROOT / "app" / "main.py"
PAGES = {"runs": None, "sid_tree": "sid_tree", "code_quality": "code_quality", "embeddings": "embeddings",
         "attention": "attention", "proxy_metrics": "proxy_metrics", "ablations": "ablations"}
FIELD_DIM = 128
WINDOW = 32


def build_run(dataset: Dataset, root: Path, branching: tuple[int, int], seed: int = 0) -> Path:
    """A runs root with one complete run over ``dataset`` and an ablation table; returns the runs root."""
    rng = np.random.default_rng(seed)
    data_dir = dataset.save(root / "data")
    split = leave_one_out(dataset)
    run = RunDir(root / "runs" / "famae-gaoq")
    run.init(dataset_name=dataset.name, dataset_path=data_dir, fingerprint=dataset.fingerprint,
             config=load_config(None, []))
    parts = [rng.normal(size=(dataset.n_items, FIELD_DIM))]
    for name in dataset.categorical_fields[:4]:
        parts.append(rng.normal(size=(dataset.cardinality(name), FIELD_DIM))[dataset.codes(name)])
    X = np.concatenate(parts, axis=1).astype(np.float32)
    with run.stage("encode"):
        save_npy(run.file("encode", "item_embeddings.npy"), X)
        epochs = np.arange(1, 21)
        pd.DataFrame({"epoch": epochs, "loss": 8 * np.exp(-epochs / 6), "metric1": 0.07 * (1 - np.exp(-epochs / 4)),
                      "metric2": 0.4 * (1 - np.exp(-epochs / 5)), "seconds": 30.0}).to_csv(
            run.file("encode", "history.csv"), index=False)
        write_json(run.file("encode", "metrics.json"), {"method": "famae", "best_epoch": 20, "metric1": 0.069,
                                                         "metric2": 0.39})
        valid = split.valid.subset(64, seed)
        items = pad_right_aligned([np.r_[h, t] for h, t in zip(valid.histories, valid.targets)], WINDOW)
        weights = rng.random((len(items), 2, 4, WINDOW)) * (items != -1)[:, None, None, :]
        weights /= weights.sum(-1, keepdims=True)
        AttentionSample(weights.astype(np.float32), items, valid.users).save(run.file("encode", "attention.npz"))
    with run.stage("quantize"):
        raw = np.stack([rng.permutation(dataset.n_items) % branching[0],
                        rng.permutation(dataset.n_items) % branching[1]], axis=1)
        codes, _ = dedup_codes(raw)
        write_sids(run.file("quantize", "sids.parquet"), dataset.item_ids, codes)
        write_parquet(run.file("quantize", "tree.parquet"), tree_frame(codes, dataset))
        write_json(run.file("quantize", "diagnostics.json"),
                   summarize(codes, raw_codes=raw, codebook_sizes=list(branching), embeddings=X,
                             histories=split.test.histories, targets=split.test.targets, extra={"method": "gaoq"}))
    with run.stage("generate"):
        test = dict(zip(HEADLINE_KEYS, (0.045, 0.068, 0.030, 0.037)))
        write_json(run.file("generate", "metrics.json"), {"valid": test, "test": test, "best_epoch": 10})
    run.set_status("done")
    write_parquet(root / "runs" / "ablations" / "bench" / "results.parquet",
                  pd.DataFrame([{"name": "ReSID", "encoder": "famae", "quantizer": "gaoq", "status": "done", **test}]))
    return root / "runs"


def time_pages(runs: Path) -> dict[str, dict[str, float]]:
    """Per page: seconds of the first load (caches emptied) and of a rerun."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    out = {}
    for name, page in PAGES.items():
        st.cache_data.clear()
        st.cache_resource.clear()
        at = AppTest.from_file(str(APP), default_timeout=900)
        at.session_state["runs_root"] = str(runs)
        t0 = time.perf_counter()
        at.run()
        if page is not None:
            t0 = time.perf_counter()  # the Runs page loaded first does not count towards another page
            at.switch_page(f"views/{page}.py").run()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        at.run()
        warm = time.perf_counter() - t0
        if at.exception:
            raise RuntimeError(f"page {name}: {at.exception[0].value}")
        out[name] = {"cold_s": cold, "rerun_s": warm}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    if not BEAUTY.is_dir():
        print(f"skip: {BEAUTY} not found (the real datasets live in ../shared/data)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        beauty = read_dataset("s3rec", BEAUTY)
        big = build_run(beauty, tmp / "beauty", (32, 40))
        small = build_run(make_demo_dataset(300, 400, seed=0), tmp / "demo", (6, 4))
        print(f"built the runs in {time.perf_counter() - t0:.1f} s "
              f"({beauty.n_items:,} items, {beauty.n_users:,} users; reference 300 items)")
        time_pages(small)  # warm-up: imports and numba compilation are paid once per process
        reference = time_pages(small)
        measured = time_pages(big)
    print(f"\n{'page':<15}{'first load':>12}{'rerun':>10}{'reference':>12}{'first/ref':>11}")
    for name in PAGES:
        m, r = measured[name], reference[name]
        print(f"{name:<15}{m['cold_s']:>11.2f}s{m['rerun_s']:>9.2f}s{r['cold_s']:>11.2f}s"
              f"{m['cold_s'] / r['cold_s']:>10.1f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS, {"items": beauty.n_items, "users": beauty.n_users, "reference_items": 300,
                         "machine": platform.platform(), "pages": measured, "reference_pages": reference})
    print(f"\nresults: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
