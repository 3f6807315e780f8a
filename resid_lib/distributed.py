"""Data-parallel process groups (``torch.distributed``), and what code needs from them.

A run launched by ``torchrun`` (or ``workbench run --nproc N``) sees ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment; :func:`init` joins the process
group once (NCCL when every rank has its own GPU, gloo on CPU). Everything below also
works in a plain single process, where it degrades to the obvious no-op, so library
code calls it unconditionally.

Training follows one recipe (FAMAE, the sequential recommenders, the generator):
every rank draws the same epoch permutation and masks for the whole *global* batch
(``config.batch_size`` rows), takes its share with :func:`batch_share`, and calls the
model's loss through :func:`loss_step`, whose ``DistributedDataParallel`` wrapper
averages the gradients. Evaluation shards users with :func:`shard` and gathers the
results with :func:`all_gather_objects`, so every rank sees the same metrics.
"""
from __future__ import annotations

import os
import pickle
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .errors import ConfigError


def launched() -> bool:
    """True when this process was started by torchrun (``WORLD_SIZE`` set)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init(device: torch.device | None = None) -> bool:
    """Join the process group torchrun describes; True when running distributed.

    Idempotent. The backend is NCCL for CUDA devices and gloo otherwise; on CUDA
    each rank uses ``cuda:LOCAL_RANK``.
    """
    if not launched():
        return False
    if dist.is_initialized():
        return True
    cuda = device is not None and device.type == "cuda"
    if cuda:
        if local_rank() >= torch.cuda.device_count():
            raise ConfigError(f"process {os.environ['RANK']} would use cuda:{local_rank()} but only "
                              f"{torch.cuda.device_count()} GPU(s) are visible; start at most one process per GPU "
                              "or use device=cpu")
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def shutdown() -> None:
    """Leave the process group (end of a distributed command); a no-op otherwise."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """The device this rank computes on: ``cuda:LOCAL_RANK`` for CUDA in a launched run, else ``device``."""
    if device.type == "cuda" and launched():
        return torch.device("cuda", local_rank())
    return device


def active() -> bool:
    """True inside an initialized process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes artifacts and shows progress."""
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` as held by rank ``src``, on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def mean_over_ranks(value: float) -> float:
    """The mean of ``value`` over all ranks (``value`` itself in a single process)."""
    values = all_gather_objects(float(value))
    return sum(values) / len(values)


def shard(n: int) -> slice:
    """This rank's contiguous share of ``range(n)`` (sizes differ by at most one)."""
    r, w = rank(), world_size()
    return slice(r * n // w, (r + 1) * n // w)


# ------------------------------------------------------------------ training
def batch_share(units: np.ndarray) -> tuple[slice, float]:
    """This rank's rows of a global batch, and the weight of the loss it computes on them.

    Args:
        units: (n,) how many loss terms each row of the global batch contributes
            (masked fields, labelled positions, or 1 per row).

    Returns:
        rows: every ``world_size``-th row starting at this rank's (round robin spreads
            batches sorted by length evenly). A rank left without rows (``n < world_size``)
            gets row 0 and weight 0: it must still run forward and backward, since DDP's
            gradient all-reduce needs every rank.
        weight: ``world_size * units[rows].sum() / units.sum()``. Every model loss is a
            mean over the units of its rows; times ``weight``, DDP's average of the
            ranks' gradients is the gradient of the mean over the whole global batch,
            exactly what one process computes. 1.0 in a single process.
    """
    w, r = world_size(), rank()
    if r >= len(units):
        return slice(0, 1), 0.0
    rows = slice(r, None, w)
    return rows, w * float(np.sum(units[rows])) / float(np.sum(units))


class LossModule(nn.Module):
    """``forward`` = ``model.loss``: DDP synchronises gradients only through its module's forward."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.model.loss(*args, **kwargs)


def loss_step(model: nn.Module) -> nn.Module:
    """A module whose forward returns ``model.loss(...)``, DistributedDataParallel in a distributed run.

    Training calls this, never ``model.loss`` directly, so that backward all-reduces
    (averages) the gradients across ranks. Parameters are broadcast from rank 0 when
    the wrapper is built; buffers (constant lookup tables) are not re-sent at every forward.
    """
    step = LossModule(model)
    if not active():
        return step
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None,
                                               forward_sync_buffers=False)


# ------------------------------------------------------------------ launching
def spawn(fn: Callable[..., Any], nprocs: int, *args: Any) -> list[Any]:
    """Run ``fn(*args)`` in ``nprocs`` fresh processes on this machine, each a rank of one process group.

    The children see the environment torchrun would give them (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` on a free local
    port) and call :func:`init` themselves. ``fn`` must be importable (a module-level
    function) and its return value picklable. Returns the values in rank order; a
    failing child raises here (``torch.multiprocessing.ProcessRaisedException``).
    """
    if nprocs < 1:
        raise ConfigError(f"nprocs must be at least 1, got {nprocs}")
    with tempfile.TemporaryDirectory(prefix="resid-spawn-") as box:
        torch.multiprocessing.start_processes(_spawned, args=(fn, nprocs, _free_port(), args, box), nprocs=nprocs,
                                              start_method="spawn")
        return [pickle.loads((Path(box) / str(r)).read_bytes()) for r in range(nprocs)]


def _spawned(local: int, fn: Callable[..., Any], nprocs: int, port: int, args: tuple, box: str) -> None:
    os.environ.update(RANK=str(local), LOCAL_RANK=str(local), WORLD_SIZE=str(nprocs), LOCAL_WORLD_SIZE=str(nprocs),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        value = fn(*args)
    finally:
        shutdown()
    (Path(box) / str(local)).write_bytes(pickle.dumps(value))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
