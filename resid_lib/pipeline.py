"""Run the E -> Q -> G stages from one config into one run directory.

Each stage lives in ``resid_lib.<stage>.stage`` and exposes ``run_stage(ctx)``,
which reads what earlier stages left in the run directory and writes its own
artifacts under ``RUN_DIR/<stage>/``.

Launched by torchrun, every rank runs every stage (training data-parallel, see
``resid_lib.distributed``) and only rank 0 writes (``resid_lib.io``); a barrier after
each stage makes its artifacts visible to every rank before the next stage reads them.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch

from . import distributed
from .config import STAGES, RunConfig, dump_yaml
from .data.dataset import Dataset
from .data.split import LeaveOneOut, leave_one_out
from .device import resolve_device, seed_everything
from .errors import ConfigError, RunDirError
from .rundir import CONFIG, RunDir


@dataclass
class StageContext:
    """Everything a stage needs: settings, data, split, where to write, and how."""

    config: RunConfig
    dataset: Dataset
    split: LeaveOneOut
    run: RunDir
    device: torch.device
    resume: bool = False
    progress: bool = True


def run_pipeline(
    config: RunConfig,
    data_dir: str | Path,
    out: str | Path,
    *,
    stages: list[str] | None = None,
    resume: bool = False,
    progress: bool = True,
) -> RunDir:
    """Run ``stages`` (default: ``config.stages``) in order and return the run directory.

    A new run needs an empty or absent ``out``. With ``resume=True`` an existing run
    continues: finished stages are kept, an interrupted stage restarts from its
    checkpoint; the config must equal the one the run was started with. Under
    torchrun this joins the process group (:func:`resid_lib.distributed.init`).
    """
    stages = list(stages or config.stages)
    for s in stages:
        if s not in STAGES:
            raise ConfigError(f"unknown stage {s!r} (stages: {', '.join(STAGES)})")
    stages = [s for s in STAGES if s in stages]
    dataset = Dataset.load(data_dir)
    device = resolve_device(config.device)
    distributed.init(device)
    run = RunDir(out)
    if run.exists():
        saved = run.path / CONFIG
        if not resume:
            raise RunDirError(f"{run.path} already holds a run; pass --resume to continue it or choose another --out")
        if saved.is_file() and saved.read_text() != dump_yaml(config):
            raise RunDirError(f"{run.path}: the config differs from the run's {CONFIG}; resume with the same config or use another --out")
    elif run.path.exists() and any(run.path.iterdir()):
        raise RunDirError(f"{run.path} exists and is not an empty folder or a run directory")
    todo = [s for s in stages if not (resume and run.stage_status(s) == "done")]
    distributed.barrier()  # every rank has checked the folder before rank 0 writes to it
    run.init(dataset_name=dataset.name, dataset_path=data_dir, fingerprint=dataset.fingerprint, config=config)
    ctx = StageContext(
        config=config,
        dataset=dataset,
        split=leave_one_out(dataset, config.data.min_length),
        run=run,
        device=distributed.local_device(device),
        resume=resume,
        progress=progress,
    )
    for stage in todo:
        seed_everything(config.seed)
        runner = importlib.import_module(f"resid_lib.{stage}.stage").run_stage
        with run.stage(stage):
            runner(ctx)
        distributed.barrier()  # rank 0 has written the stage's artifacts before any rank reads them
    all_done = all(run.stage_status(s) == "done" for s in config.stages)
    run.set_status("done" if all_done else "partial")
    return run
