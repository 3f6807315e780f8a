"""Run directories: the contract between the library, the notebooks and the app.

Layout and file formats (every file written atomically, see ``resid_lib.io``)::

    RUN_DIR/
      run.json             status; dataset {name, path, fingerprint}; stages {name: {status, started,
                           finished, seconds (over every attempt), error}}
      config.yaml          the resolved RunConfig
      encode/
        item_embeddings.npy  float32 (n_items, d), rows in the dataset's item order
        history.csv          one row per epoch: epoch, loss, seconds, and metric1, metric2 (FAMAE)
                             or valid_recall@10, valid_ndcg@10 (sequential recommenders)
        metrics.json         {"method", "best_epoch", "metric1", "metric2"} (FAMAE) or
                             {"method", "best_epoch", "valid": {..}, "test": {..}} (recommenders)
        attention.npz        weights float32 (n_samples, n_layers, n_heads, L): the target (last)
                             position's attention over the window; items int64 (n_samples, L), PAD -1;
                             users int64 (n_samples,)
        model.pt, checkpoint.pt
      quantize/
        sids.parquet         item_id, codebook1_id .. codebookL_id (int64); unique rows
        diagnostics.json     see resid_lib.quantize.diagnostics
        tree.parquet         one row per SID-tree node: level, prefix ("3-17"), parent, code, n_items,
                             and per categorical field F: F_top (dominant value), F_share
        quantizer.pt
      generate/
        metrics.json         {"valid": {..}, "test": {..}, "best_epoch", "invalid_rate", "decode_seconds"}
        history.csv          epoch, loss, valid_recall@10, seconds
        predictions.parquet  user_id, split ("valid"/"test"), target (item index), ranked (list of item indices)
        model.pt, checkpoint.pt

Metric dictionaries use the keys ``recall@5``, ``recall@10``, ``ndcg@5``, ``ndcg@10``.
A stage is ``running`` while it works, then ``done`` or ``failed`` (with the error
message); an interrupted stage stays ``running`` or ``interrupted`` and
``--resume`` continues it from its checkpoint.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from .errors import RunDirError
from .io import atomic_dir, read_json, write_json, write_text

MANIFEST = "run.json"
CONFIG = "config.yaml"
HEADLINE_KEYS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
_MANIFEST_LOCK = threading.RLock()  # manifests are read-modified-written by stage clocks (threads) too


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


class RunDir:
    """A run directory on disk; creates nothing until something is written."""

    #: how often a running stage writes its elapsed time to ``run.json``, so that a process
    #: killed without warning still leaves the time of its attempt for the next one to add to
    HEARTBEAT_SECONDS = 30.0

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --------------------------------------------------------------- paths
    def stage_dir(self, stage: str) -> Path:
        d = self.path / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    def file(self, stage: str, name: str) -> Path:
        """Path of an artifact (not created)."""
        return self.path / stage / name

    def exists(self) -> bool:
        return (self.path / MANIFEST).is_file()

    # ------------------------------------------------------------ manifest
    @property
    def manifest(self) -> dict:
        p = self.path / MANIFEST
        return read_json(p) if p.is_file() else {}

    def _update(self, **changes: Any) -> dict:
        with _MANIFEST_LOCK:
            m = self.manifest
            m.update(changes)
            m["updated"] = _now()
            write_json(self.path / MANIFEST, m)
            return m

    def _write_stage(self, stage: str, make: Callable[[dict], dict], **changes: Any) -> None:
        """Replace ``stage``'s record by ``make(current record)`` (and apply ``changes`` to the run), atomically."""
        with _MANIFEST_LOCK:
            stages = self.manifest.get("stages", {})
            stages[stage] = make(stages.get(stage, {}))
            self._update(stages=stages, **changes)

    def init(self, *, dataset_name: str, dataset_path: str | Path, fingerprint: str, config: Any | None = None) -> None:
        """Create or reopen the run for a dataset; refuse a run made from different data."""
        m = self.manifest
        if m:
            have = m.get("dataset", {}).get("fingerprint")
            if have and have != fingerprint:
                raise RunDirError(
                    f"{self.path} was made from dataset {m['dataset'].get('name')!r} "
                    f"(fingerprint {have}), not from {dataset_name!r} ({fingerprint}); use another --out"
                )
        else:
            m = {"created": _now(), "stages": {}}
        m["dataset"] = {"name": dataset_name, "path": str(Path(dataset_path).resolve()), "fingerprint": fingerprint}
        m.setdefault("status", "created")
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / MANIFEST, {**m, "updated": _now()})
        if config is not None:
            self.write_config(config)

    def write_config(self, config: Any) -> None:
        from .config import dump_yaml

        write_text(self.path / CONFIG, dump_yaml(config))

    def read_config(self):
        from .config import from_dict, RunConfig

        p = self.path / CONFIG
        if not p.is_file():
            raise RunDirError(f"{self.path}: no {CONFIG}")
        return from_dict(RunConfig, yaml.safe_load(p.read_text()) or {})

    @property
    def status(self) -> str:
        return self.manifest.get("status", "missing")

    def set_status(self, status: str) -> None:
        self._update(status=status)

    def stage_status(self, stage: str) -> str:
        return self.manifest.get("stages", {}).get(stage, {}).get("status", "pending")

    def stage_seconds(self, stage: str) -> float | None:
        return self.manifest.get("stages", {}).get(stage, {}).get("seconds")

    @contextlib.contextmanager
    def stage(self, stage: str) -> Iterator[Path]:
        """Mark a stage running; on exit record ``done`` with its wall time, or ``failed``.

        The recorded ``seconds`` cover every attempt: resuming a stage that did not finish
        (interrupted, failed, or killed while ``running``) adds to the time its earlier
        attempts took. While the stage runs its time is rewritten every ``HEARTBEAT_SECONDS``."""
        earlier = self.manifest.get("stages", {}).get(stage, {})
        carried = earlier.get("seconds", 0.0) if earlier.get("status") in ("running", "interrupted", "failed") else 0.0
        t0 = time.perf_counter()

        def elapsed() -> float:
            return round(carried + time.perf_counter() - t0, 3)

        self._write_stage(stage, lambda _: {"status": "running", "started": _now(), "seconds": carried},
                          status="running")
        stop = threading.Event()
        clock = threading.Thread(target=self._heartbeat, args=(stage, elapsed, stop), daemon=True)
        clock.start()
        try:
            yield self.stage_dir(stage)
            outcome = {"status": "done", "finished": _now()}
        except BaseException as exc:
            outcome = {"status": "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                       "error": f"{type(exc).__name__}: {exc}"}
            raise
        finally:
            stop.set()
            clock.join()
            self._write_stage(stage, lambda record: {**{k: v for k, v in record.items() if k != "error"}, **outcome,
                                                     "seconds": elapsed()},
                              **({} if outcome["status"] == "done" else {"status": outcome["status"]}))

    def _heartbeat(self, stage: str, elapsed: Callable[[], float], stop: threading.Event) -> None:
        """Until ``stop``, write the running stage's ``elapsed()`` seconds every ``HEARTBEAT_SECONDS``."""
        while not stop.wait(self.HEARTBEAT_SECONDS):
            self._write_stage(stage, lambda record: {**record, "seconds": elapsed()})

    def copy_stage(self, stage: str, source: "RunDir") -> None:
        """Take over the finished ``stage`` of another run: its folder is copied (atomically)
        and the manifest records the source's status and wall time plus ``copied_from``."""
        record = source.manifest.get("stages", {}).get(stage, {})
        if record.get("status") != "done":
            raise RunDirError(f"{source.path}: stage {stage!r} is {record.get('status', 'pending')}, not done")
        with atomic_dir(self.path / stage) as tmp:
            shutil.copytree(source.path / stage, tmp, dirs_exist_ok=True)
        self._write_stage(stage, lambda _: {**record, "copied_from": str(source.path.resolve())})

    # ------------------------------------------------------------- reading
    def read_metrics(self, stage: str) -> dict | None:
        p = self.file(stage, "metrics.json")
        return read_json(p) if p.is_file() else None

    def headline(self) -> dict[str, float]:
        """Test metrics of the run's recommender: the G-stage's, else a sequential encoder's."""
        for stage in ("generate", "encode"):
            m = self.read_metrics(stage)
            if m and isinstance(m.get("test"), dict):
                return {k: m["test"][k] for k in HEADLINE_KEYS if k in m["test"]}
        return {}


@dataclass(frozen=True)
class RunSummary:
    path: Path
    status: str
    dataset: str
    methods: dict[str, str]
    stages: dict[str, str]
    metrics: dict[str, float]
    updated: str


def list_runs(root: str | Path, max_depth: int = 4) -> list[RunSummary]:
    """Every run directory under ``root`` (the root itself included), newest first."""
    root = Path(root)
    if not root.exists():
        raise RunDirError(f"runs root {root} does not exist")
    found = []
    candidates = [root] + [p.parent for depth in range(1, max_depth + 1) for p in root.glob("/".join(["*"] * depth) + f"/{MANIFEST}")]
    seen = set()
    for path in candidates:
        if path in seen or not (path / MANIFEST).is_file():
            continue
        seen.add(path)
        found.append(summarize(RunDir(path)))
    return sorted(found, key=lambda s: s.updated, reverse=True)


def summarize(run: RunDir) -> RunSummary:
    m = run.manifest
    methods = {}
    cfg = run.path / CONFIG
    if cfg.is_file():
        raw = yaml.safe_load(cfg.read_text()) or {}
        for stage in ("encode", "quantize"):
            if isinstance(raw.get(stage), dict) and "method" in raw[stage]:
                methods[stage] = raw[stage]["method"]
    return RunSummary(
        path=run.path,
        status=m.get("status", "missing"),
        dataset=m.get("dataset", {}).get("name", "?"),
        methods=methods,
        stages={k: v.get("status", "?") for k, v in m.get("stages", {}).items()},
        metrics=run.headline(),
        updated=m.get("updated", ""),
    )
