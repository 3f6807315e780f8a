"""The paper's comparison as a grid of pipeline runs, and its results table.

Every row of :data:`GRID` is one run directory ``OUT/runs/<folder>`` made by
:func:`resid_lib.pipeline.run_pipeline` from the same base config with the row's
``encode.method`` / ``quantize.method``. Rows with a quantizer run E -> Q -> G and
report the G-stage's test metrics; the recommender rows (SASRec, SASRec*) run the
encode stage only and report its own test metrics. A run that already finished
with the same config and data is reused; an unfinished one is resumed; a row that
fails is recorded with its error and the others continue. Rows whose encode stage
would compute the same thing (same data, seed and ``encode`` settings: Q1 and Q2 share
ReSID's FAMAE, E1 and TIGER the text embeddings, E2 the SASRec row's model) train it
once: a new run starts from a copy of another row's finished encode stage (its
``run.json`` names the source under ``copied_from``, and the table shows the source's
encode time).

The table (``OUT/results.parquet`` and ``OUT/results.md``) has one row per method:
name, encoder, quantizer, status, recall@5, recall@10, ndcg@5, ndcg@10, the wall
time of each stage in seconds, the run folder and the error of a failed row.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .config import STAGES, RunConfig, dump_yaml, load_config
from .data.dataset import Dataset
from .errors import ConfigError, RunDirError
from .io import write_parquet, write_text
from .pipeline import run_pipeline
from .rundir import CONFIG, HEADLINE_KEYS, RunDir

RESULTS_PARQUET = "results.parquet"
RESULTS_MARKDOWN = "results.md"


@dataclass(frozen=True)
class AblationRow:
    """One method of the comparison."""

    name: str
    folder: str
    encoder: str
    quantizer: str | None  # None: a recommender judged by its encode stage alone
    description: str

    @property
    def stages(self) -> list[str]:
        return ["encode"] if self.quantizer is None else list(STAGES)

    @property
    def metrics_stage(self) -> str:
        return "encode" if self.quantizer is None else "generate"

    def overrides(self) -> list[str]:
        """``--set`` items that turn the base config into this row's config."""
        items = [f"encode.method={self.encoder}", f"stages=[{', '.join(self.stages)}]"]
        if self.quantizer is not None:
            items.append(f"quantize.method={self.quantizer}")
        return items


GRID: tuple[AblationRow, ...] = (
    AblationRow("ReSID", "resid", "famae", "gaoq", "FAMAE + GAOQ (the method)"),
    AblationRow("E1", "e1", "text", "gaoq", "text embedding + GAOQ"),
    AblationRow("E2", "e2", "sasrec", "gaoq", "SASRec item embedding + GAOQ"),
    AblationRow("E3", "e3", "bert4rec", "gaoq", "BERT4Rec item embedding + GAOQ"),
    AblationRow("Q1", "q1", "famae", "rqvae", "FAMAE + RQ-VAE"),
    AblationRow("Q2", "q2", "famae", "hkmeans", "FAMAE + hierarchical k-means (local indices)"),
    AblationRow("TIGER", "tiger", "text", "rqvae", "text embedding + RQ-VAE"),
    AblationRow("SASRec", "sasrec", "sasrec", None, "SASRec recommender (item ids)"),
    AblationRow("SASRec*", "sasrec_features", "sasrec_features", None, "SASRec with the same side features"),
)

COLUMNS = ["name", "encoder", "quantizer", "status", *HEADLINE_KEYS,
           "encode_seconds", "quantize_seconds", "generate_seconds", "run", "error"]


def select_rows(only: list[str] | tuple[str, ...] | None = None) -> list[AblationRow]:
    """The grid, or the rows named in ``only`` (by name or folder, case-insensitive), in grid order."""
    if not only:
        return list(GRID)
    wanted = {name.lower() for name in only}
    known = {row.name.lower() for row in GRID} | {row.folder for row in GRID}
    unknown = sorted(wanted - known)
    if unknown:
        raise ConfigError(f"unknown ablation row {unknown[0]!r} (rows: {', '.join(r.name for r in GRID)})")
    return [row for row in GRID if row.name.lower() in wanted or row.folder in wanted]


def run_ablation(
    config: str | Path,
    data_dir: str | Path,
    out: str | Path,
    *,
    only: list[str] | tuple[str, ...] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    execute: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Run (or reuse) the selected rows and write the table of the whole grid.

    The table always lists every row of :data:`GRID`. Rows that are not selected
    (all rows when ``execute`` is False) are only collected: a finished run with
    the same config and data counts, anything else reads ``not run``. The table is
    rewritten after every row with the other rows read from disk at that moment, so
    ``--only`` calls add to one cumulative ``OUT/results.parquet``, also when they
    run at the same time.

    Args:
        config: base preset name or YAML file.
        data_dir: canonical dataset folder.
        out: ablation folder; runs go to ``out/runs/<folder>``.
        only: row names to run (default: all of :data:`GRID`).
        overrides: ``section.key=value`` items applied to the base config before each row's own.
        execute: False to collect existing runs without running anything.
        progress: progress bars of the stages.
        log: where one-line status messages go.
    Returns:
        The results table (also written to disk after every row).
    """
    selected = [row.name for row in select_rows(only)] if execute else []
    configs = {row.name: load_config(config, [*overrides, *row.overrides()]) for row in GRID}  # fail fast on bad keys
    fingerprint = Dataset.load(data_dir).fingerprint
    out = Path(out)
    done_here: dict[str, dict] = {}

    def table() -> pd.DataFrame:
        """Every row: this call's records, the others read from disk now (another process may have added some)."""
        records = [done_here.get(row.name) or existing(row, configs[row.name], out / "runs" / row.folder,
                                                         fingerprint, out) for row in GRID]
        return pd.DataFrame(records, columns=COLUMNS)

    for row in GRID:
        if row.name not in selected:
            continue
        run_dir = out / "runs" / row.folder
        log(f"[{selected.index(row.name) + 1}/{len(selected)}] {row.name}: {row.encoder} + "
            f"{row.quantizer or '-'} -> {run_dir}")
        t0 = time.perf_counter()
        try:
            run, how = run_or_reuse(configs[row.name], data_dir, run_dir, fingerprint, progress=progress)
            done_here[row.name] = collect(row, run, out)
            log(f"    {how} in {time.perf_counter() - t0:.0f} s: " + _format_metrics(done_here[row.name]))
        except Exception as exc:  # one failing row must not stop the comparison
            done_here[row.name] = failed(row, run_dir, out, exc)
            log(f"    failed: {done_here[row.name]['error']}")
        write_results(table(), out)
    results = table()
    write_results(results, out)
    return results


def run_or_reuse(config: RunConfig, data_dir: str | Path, run_dir: Path, fingerprint: str, *,
                 progress: bool = True) -> tuple[RunDir, str]:
    """Reuse a finished run with the same config and data, resume an unfinished one, or start it."""
    run = RunDir(run_dir)
    if not run.exists():
        donor = shared_encode(config, run_dir, fingerprint)
        if donor is None:
            return run_pipeline(config, data_dir, run_dir, progress=progress), "ran"
        run.init(dataset_name=donor.manifest["dataset"]["name"], dataset_path=data_dir, fingerprint=fingerprint,
                 config=config)
        run.copy_stage("encode", donor)
        return (run_pipeline(config, data_dir, run_dir, resume=True, progress=progress),
                f"ran (encode stage copied from {donor.path.name})")
    check_same_run(run, config, fingerprint)
    if run.status == "done":
        return run, "reused"
    return run_pipeline(config, data_dir, run_dir, resume=True, progress=progress), "resumed"


def shared_encode(config: RunConfig, run_dir: Path, fingerprint: str) -> RunDir | None:
    """Another run beside ``run_dir`` whose finished encode stage this config would recompute:
    same data, ``seed``, ``data`` and ``encode`` settings. None if there is none (or the
    config has no encode stage)."""
    if "encode" not in config.stages or not run_dir.parent.is_dir():
        return None
    for path in sorted(run_dir.parent.iterdir()):
        other = RunDir(path)
        if path == run_dir or not other.exists() or other.stage_status("encode") != "done":
            continue
        if other.manifest.get("dataset", {}).get("fingerprint") != fingerprint:
            continue
        try:
            theirs = other.read_config()
        except (RunDirError, ConfigError):
            continue
        if _encode_settings(theirs) == _encode_settings(config):
            return other
    return None


def _encode_settings(config: RunConfig) -> tuple:
    """What an encode stage's result depends on."""
    return config.seed, config.data, config.encode


def check_same_run(run: RunDir, config: RunConfig, fingerprint: str) -> None:
    """RunDirError unless ``run`` was made from the same data with the same config."""
    have = run.manifest.get("dataset", {}).get("fingerprint")
    if have != fingerprint:
        raise RunDirError(f"{run.path} was made from other data (fingerprint {have}, not {fingerprint}); "
                          f"use another --out or delete it")
    saved = run.path / CONFIG
    if not saved.is_file() or saved.read_text() != dump_yaml(config):
        raise RunDirError(f"{run.path} was made with a different config; delete it (or use another --out) to rerun this row")


def existing(row: AblationRow, config: RunConfig, run_dir: Path, fingerprint: str, out: Path) -> dict:
    """The record of a row that is not run now: its finished run if there is one, else ``not run``."""
    run = RunDir(run_dir)
    record = _base_record(row, run_dir, out)
    record["status"] = "not run"
    if not run.exists():
        return record
    try:
        check_same_run(run, config, fingerprint)
    except RunDirError as exc:
        record["error"] = str(exc)
        return record
    if run.status != "done":
        record["error"] = f"run is {run.status}"
        return record
    return collect(row, run, out)


def collect(row: AblationRow, run: RunDir, out: Path) -> dict:
    """The results-table record of a finished run."""
    metrics = run.read_metrics(row.metrics_stage) or {}
    test = metrics.get("test")
    if not isinstance(test, dict):
        raise RunDirError(f"{run.path}: {row.metrics_stage}/metrics.json has no test metrics")
    record = _base_record(row, run.path, out)
    record.update(status="done", **{k: float(test[k]) for k in HEADLINE_KEYS})
    for stage in STAGES:
        record[f"{stage}_seconds"] = run.stage_seconds(stage) if stage in row.stages else None
    return record


def failed(row: AblationRow, run_dir: Path, out: Path, exc: BaseException) -> dict:
    record = _base_record(row, run_dir, out)
    record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    run = RunDir(run_dir)
    if run.exists():
        for stage in row.stages:
            record[f"{stage}_seconds"] = run.stage_seconds(stage)
    return record


def _base_record(row: AblationRow, run_dir: Path, out: Path) -> dict:
    record = {c: None for c in COLUMNS}
    record.update(name=row.name, encoder=row.encoder, quantizer=row.quantizer, run=str(Path(run_dir).relative_to(out)))
    return record


def write_results(table: pd.DataFrame, out: str | Path) -> None:
    """``results.parquet`` and ``results.md`` under ``out``."""
    out = Path(out)
    write_parquet(out / RESULTS_PARQUET, table)
    write_text(out / RESULTS_MARKDOWN, results_markdown(table))


def results_markdown(table: pd.DataFrame) -> str:
    """The results table as GitHub markdown: metrics to 4 decimals, stage times in seconds."""
    header = ["method", "encoder", "quantizer", "R@5", "R@10", "N@5", "N@10", "E s", "Q s", "G s", "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rec in table.to_dict("records"):
        cells = [rec["name"], rec["encoder"], "-" if pd.isna(rec["quantizer"]) else rec["quantizer"]]
        cells += [_fmt(rec[k], ".4f") for k in HEADLINE_KEYS]
        cells += [_fmt(rec[f"{s}_seconds"], ".0f") for s in STAGES]
        unfinished = rec["status"] != "done" and not pd.isna(rec["error"])
        cells.append(f"{rec['status']}: {rec['error']}" if unfinished else rec["status"])
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value, spec: str) -> str:
    return "-" if value is None or pd.isna(value) else format(value, spec)


def _format_metrics(record: dict) -> str:
    return "  ".join(f"{k} {record[k]:.4f}" for k in HEADLINE_KEYS)
