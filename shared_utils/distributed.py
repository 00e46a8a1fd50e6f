"""Data-parallel training under torchrun: the process group, rank-0 helpers, and a run only rank 0 writes.

Origin: written for dgm-course (MIT licence). Everything is PyTorch's own: ``torchrun`` starts
the processes and describes them in environment variables (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), ``torch.distributed`` joins them, and
``torch.nn.parallel.DistributedDataParallel`` averages the gradients. What is here is the small
glue every project would otherwise write:

* :func:`setup` joins the process group torchrun describes (NCCL on CUDA, one GPU per process
  by ``LOCAL_RANK``; gloo on the CPU) and returns a :class:`Dist`; without torchrun it returns
  a single-process ``Dist`` and starts nothing, so one training script serves both;
* :func:`barrier`, :func:`all_reduce_mean` (of a Python number, e.g. the loss for the log),
  :func:`broadcast_object`, :func:`shard` (the rows of a global batch that one rank computes),
  :func:`rank_seed`, :func:`main_print`;
* :class:`DistributedRun`, the run kit's :class:`~shared_utils.runs.Run` for every rank.

How a data-parallel run is organised (``projects/ddpm/ddpm/train.py`` is an example). Every rank
walks the same sequence of *global* batches (``run.batches``: each epoch's order is a function
of the seed and the epoch, so all ranks agree without communicating), draws the step's random
numbers for the whole global batch from ``run.generator`` (the same state on every rank), and
computes the loss on its own :func:`shard` of the rows. DistributedDataParallel averages the
shards' gradients, so with equal shards the update is the single-process update of the global
batch, up to the order of floating-point sums; a run on N processes resumes on any number of
processes. Only rank 0 owns the run folder: it reads it on ``--resume`` and sends the state to
the others, and it alone writes checkpoints, logs and the shipped weights. The budgets
(``--minutes``, ``--cpu-minutes``) are measured by rank 0's clocks and rank 0 decides for all
when they are spent, so no rank stops alone and leaves the others waiting.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as tdist

from shared_utils import runs
from shared_utils.runs import LOGS, Run, RunConfig, RunError
from shared_utils.training import pick_device

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank, world size, local rank, backend, device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """More than one process: gradients and counters must be communicated."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that reads and writes the run folder and prints."""
        return self.rank == 0


def launched_by_torchrun(env: dict[str, str] | None = None) -> bool:
    """True when the environment describes a process of a torchrun (or equivalent) job."""
    env = os.environ if env is None else env
    return "RANK" in env and "WORLD_SIZE" in env


def _env_int(env: dict[str, str], name: str) -> int:
    try:
        return int(env[name])
    except (KeyError, ValueError):
        raise RunError(
            f"${name} is {env.get(name)!r}: start a distributed run with torchrun, which sets "
            f"{', '.join(ENV_VARS)}"
        ) from None


def setup(device: str = "auto", backend: str | None = None) -> Dist:
    """Join the process group that torchrun describes in the environment; without torchrun,
    a single-process :class:`Dist` on ``device`` (nothing is started).

    On CUDA each process takes GPU ``LOCAL_RANK`` and the NCCL backend; otherwise gloo.
    ``backend`` overrides the choice. Raises :class:`~shared_utils.runs.RunError` (one line)
    for an inconsistent environment or device."""
    env = dict(os.environ)
    try:
        dev = pick_device(device)
    except RuntimeError:
        raise RunError(f"--device {device!r} is not a device: use cpu, cuda, mps or auto") from None
    if not launched_by_torchrun(env):
        return Dist(device=dev)
    rank, world = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")
    local = _env_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    if not 0 <= rank < world:
        raise RunError(f"$RANK {rank} is not in 0..$WORLD_SIZE-1 = {world - 1}")
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise RunError(
                f"local rank {local} has no GPU ({torch.cuda.device_count()} visible): start at "
                "most one process per GPU (torchrun --nproc_per_node)"
            )
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    elif dev.type == "mps" and world > 1:
        raise RunError("several processes cannot share an MPS device: use --device cpu")
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if world > 1 and not tdist.is_initialized():
        tdist.init_process_group(backend, rank=rank, world_size=world)
    return Dist(rank, world, local, backend if world > 1 else None, dev)


def cleanup() -> None:
    """Leave the process group (at the end of a run; harmless without one)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def _active() -> bool:
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def barrier() -> None:
    """Wait until every process gets here (a no-op for a single process)."""
    if _active():
        tdist.barrier()


def _comm_device() -> torch.device:
    """Where collective tensors live: the current GPU under NCCL, else the CPU."""
    if tdist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(value: float | torch.Tensor) -> float:
    """The mean over all processes of a number (a Python float or a one-element tensor)."""
    value = float(value)
    if not _active():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    tdist.all_reduce(tensor, op=tdist.ReduceOp.SUM)
    return float(tensor.item()) / tdist.get_world_size()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of process ``src`` on every process (pickled between the job's own processes)."""
    if not _active():
        return obj
    box = [obj if tdist.get_rank() == src else None]
    tdist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def shard(n: int, dist: Dist) -> slice:
    """The rows of a global batch of ``n`` that ``dist.rank`` computes: the rank-th of
    ``world_size`` equal contiguous blocks. Equal blocks make DistributedDataParallel's mean of
    the per-rank mean gradients the mean over the global batch; ``n`` must divide evenly."""
    if n % dist.world_size:
        raise RunError(
            f"a global batch of {n} does not split evenly over {dist.world_size} processes: "
            f"choose --batch-size as a multiple of {dist.world_size}"
        )
    size = n // dist.world_size
    return slice(dist.rank * size, (dist.rank + 1) * size)


def rank_seed(seed: int, rank: int) -> int:
    """A seed of its own for each rank, for randomness that must differ between processes
    (e.g. dropout masks of each rank's shard); rank 0 keeps ``seed``."""
    return (seed + 1_000_003 * rank) % 2**63


def main_print(*args: Any, dist: Dist | None = None, **kwargs: Any) -> None:
    """``print`` on rank 0 only."""
    if dist is None:
        rank = tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0
    else:
        rank = dist.rank
    if rank == 0:
        print(*args, **kwargs)


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


class _Discard:
    """A CSV logger that writes nothing (the loggers of ranks other than 0)."""

    def log(self, **row: Any) -> None:
        pass

    def size(self) -> int:
        return 0


class DistributedRun(Run):
    """:class:`~shared_utils.runs.Run` on every rank of a data-parallel job.

    Rank 0 is an ordinary :class:`Run`: it checks and owns ``--out``, restores ``--resume``, logs,
    saves and ships. The other ranks never touch the folder: after ``start`` they receive rank
    0's state (weights, every registered object, RNG states, counters, the project's
    ``run.state``), so all ranks continue from the same point; their ``log``, ``log_eval``,
    ``save`` and ``finish`` do nothing. Time budgets are decided by rank 0 for everyone. With a
    single process it is exactly :class:`Run`."""

    def __init__(self, cfg: RunConfig, dist: Dist):
        self.dist = dist
        self._given = cfg
        if not dist.is_main:  # validate the flags, but leave the run folder to rank 0
            hidden = os.path.join(tempfile.gettempdir(), f"dgm-rank{dist.rank}-{os.getpid()}")
            cfg = replace(cfg, out=Path(hidden), resume=False, ship=None, quiet=True)
        error = None
        try:
            super().__init__(cfg)
        except RunError as err:
            error = err
        if dist.enabled:  # rank 0's error stops every rank, so that none waits for the others
            message = broadcast_object(None if error is None else str(error))
            if message is not None:
                raise RunError(message)
        if error is not None:
            raise error
        self.device = dist.device

    def start(self, model: torch.nn.Module, model_config: dict[str, Any], **stateful: Any) -> None:
        """Rank 0: :meth:`Run.start` (restoring ``--resume``); then every rank takes rank 0's
        state, so that all begin the same step with the same weights, optimizer state and RNGs."""
        if self.dist.is_main:
            super().start(model, model_config, **stateful)
        else:
            self.model, self.model_config = model, dict(model_config)
            self.train_config = {}
            self._stateful = stateful
            self.loggers = {name: _Discard() for name in LOGS}
            self._clock = (runs._wall(), runs._cpu())
            self._started = True
        if self.dist.enabled:
            payload = None
            if self.dist.is_main:
                payload = _to_cpu({"weights": model.state_dict(), "state": self._train_state()})
            self._follow(broadcast_object(payload))
        self._last_row = (self.step, time.perf_counter())

    def _follow(self, payload: dict[str, Any]) -> None:
        """Take rank 0's state (on the other ranks)."""
        if self.dist.is_main:
            return
        self.model.load_state_dict(payload["weights"])
        ts = payload["state"]
        for name, obj in self._stateful.items():
            obj.load_state_dict(ts["objects"][name])
            if isinstance(obj, torch.optim.Optimizer):
                runs._match_layouts(obj)
        runs._set_rng_state(ts["rng"], self.generator)
        counters = ts["counters"]
        self.step, self.epoch = int(counters["step"]), int(counters["epoch"])
        self.batch_in_epoch = int(counters["batch_in_epoch"])
        self._seconds_before = {"wall": float(ts["wall_s"]), "cpu": float(ts["cpu_s"])}
        self.state, self.metrics = dict(ts["state"]), dict(ts["metrics"])

    def _stop_reason(self) -> str | None:
        reason = super()._stop_reason()
        if self.dist.enabled and (self.cfg.minutes is not None or self.cfg.cpu_minutes is not None):
            reason = broadcast_object(reason)  # rank 0's clocks decide for every rank
        return reason

    def log(self, **values: float) -> None:
        if self.dist.is_main:
            super().log(**values)

    def log_eval(self, **values: float) -> None:
        if self.dist.is_main:
            super().log_eval(**values)

    def save(self):
        return super().save() if self.dist.is_main else self.last

    def save_weights(self, path, metrics=None, weights=None):
        if self.dist.is_main:
            return super().save_weights(path, metrics, weights)
        return Path(path)

    def finish(self, metrics: dict[str, Any] | None = None, weights=None):
        """Rank 0: :meth:`Run.finish` (with the number of processes in the metrics); the
        others return rank 0's result path without writing."""
        if not self.dist.is_main:
            given = self._given
            return Path(given.ship) if given.ship is not None else Path(given.out) / self.last.name
        extra = {"world_size": self.dist.world_size} if self.dist.enabled else {}
        return super().finish({**(metrics or {}), **extra}, weights=weights)


__all__ = [
    "Dist",
    "DistributedRun",
    "all_reduce_mean",
    "barrier",
    "broadcast_object",
    "cleanup",
    "launched_by_torchrun",
    "main_print",
    "rank_seed",
    "setup",
    "shard",
]
