"""shared_utils.distributed: the process group from torchrun's environment, the rank-0 helpers, and
DistributedRun, tested with two real CPU processes (gloo) against one process.

This file is also the workers' script: started with torchrun's environment variables,
``test_distributed.py worker REPORTS OUT OPTIONS`` runs a tiny data-parallel training on the run
kit and writes what its rank saw into REPORTS. (projects/ddpm's tests start its training with
torchrun itself.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if __name__ == "__main__":  # a torchrun worker: make shared_utils importable
    sys.path.insert(0, str(ROOT))

from shared_utils import distributed, runs  # noqa: E402
from shared_utils.checkpoints import load_checkpoint  # noqa: E402
from shared_utils.distributed import Dist, DistributedRun, RunError  # noqa: E402
from shared_utils.runs import RunConfig, flag  # noqa: E402

torch.set_num_threads(1)  # the course machine's cores are shared
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")


@dataclass
class TinyConfig(RunConfig):
    batch_size: int = flag(8, "global batch")
    lr: float = flag(0.05, "Adam learning rate")


def tiny_train(cfg: TinyConfig, clock_step: float | None = None) -> dict:
    """A linear regression trained with Adam by DistributedDataParallel on the run kit, the way a
    project's train.py does it: every rank walks the same global batches and computes its shard.
    ``clock_step``: this process's fake wall clock advances that much per reading. Returns what
    this rank ends with."""
    dist = distributed.setup("cpu")
    if clock_step is not None:
        clock = {"t": 0.0}

        def wall() -> float:
            clock["t"] += clock_step
            return clock["t"]

        runs._wall = wall
    try:
        run = DistributedRun(cfg, dist)
        gen = torch.Generator().manual_seed(123)
        x = torch.randn(40, 4, generator=gen)
        y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(40, generator=gen)
        model = torch.nn.Linear(4, 1)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        run.start(model, {}, optimizer=optimizer)
        step_model = torch.nn.parallel.DistributedDataParallel(model) if dist.enabled else model
        losses = []
        for xb, yb in run.batches(x, y, batch_size=cfg.batch_size, drop_last=True):
            noise = torch.randn(len(xb), generator=run.generator)  # drawn for the global batch
            rows = distributed.shard(len(xb), dist)
            pred = step_model(xb[rows]).squeeze(1)
            loss = ((pred - yb[rows] - 0.01 * noise[rows]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(distributed.all_reduce_mean(loss.item()))
            run.log(loss=losses[-1])
        run.finish()
        return {
            "rank": dist.rank,
            "world_size": dist.world_size,
            "step": run.step,
            "stopped_by": run.stopped_by,
            "weight": model.weight.detach().flatten().tolist(),
            "bias": model.bias.detach().tolist(),
            "losses": losses,
            "mean_of_ranks": distributed.all_reduce_mean(float(dist.rank)),
            "from_rank_0": distributed.broadcast_object({"r": dist.rank}),
        }
    finally:
        distributed.cleanup()


def _worker(argv: list[str]) -> None:
    report_dir, out = Path(argv[0]), Path(argv[1])
    options = json.loads(argv[2])
    clock = options.pop("clock_steps", None)
    rank = int(os.environ["RANK"])
    result = tiny_train(
        TinyConfig(out=out, quiet=True, **options), None if clock is None else clock[rank]
    )
    (report_dir / f"rank{rank}.json").write_text(json.dumps(result))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(tmp_path: Path, out: Path, options: dict, nproc: int = 2):
    """Start ``nproc`` workers of this file with the environment torchrun gives its processes
    (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); wait for them.
    Returns the report folder and the finished processes."""
    reports = tmp_path / f"reports_{out.name}_{len(list(tmp_path.glob('reports_*')))}"
    reports.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    env.update(MASTER_PORT=str(_free_port()), WORLD_SIZE=str(nproc))
    cmd = [sys.executable, __file__, "worker", str(reports), str(out), json.dumps(options)]
    procs = [
        subprocess.Popen(
            cmd,
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(nproc)
    ]
    return reports, [(p, *p.communicate(timeout=240)) for p in procs]


def _torchrun(tmp_path: Path, out: Path, nproc: int = 2, **options) -> list[dict]:
    """Run ``tiny_train`` in ``nproc`` CPU processes (gloo); each rank's result."""
    reports, finished = _launch(tmp_path, out, options, nproc)
    for proc, _, err in finished:
        assert proc.returncode == 0, err[-3000:]
    return [json.loads((reports / f"rank{r}.json").read_text()) for r in range(nproc)]


def _close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return max(abs(u - v) for u, v in zip(a, b, strict=True)) < tol


# --------------------------------------------------------------------------------------------------
# one process
# --------------------------------------------------------------------------------------------------


def test_without_torchrun_setup_starts_nothing(monkeypatch):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    dist = distributed.setup("cpu")
    assert dist == Dist(device=torch.device("cpu")) and dist.is_main and not dist.enabled
    assert not torch.distributed.is_initialized()
    assert distributed.all_reduce_mean(torch.tensor(2.5)) == 2.5
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    distributed.barrier()  # no group: returns at once


def test_a_broken_torchrun_environment_is_one_line(monkeypatch):
    monkeypatch.setenv("RANK", "two")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RunError, match=r"\$RANK is 'two': start a distributed run with torchrun"):
        distributed.setup("cpu")
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(RunError, match="not in 0..\\$WORLD_SIZE-1 = 1"):
        distributed.setup("cpu")


def test_shards_cover_the_global_batch_once():
    for world in (1, 2, 4):
        rows = [distributed.shard(12, Dist(rank, world)) for rank in range(world)]
        covered = [i for s in rows for i in range(12)[s]]
        assert covered == list(range(12))
    with pytest.raises(RunError, match="multiple of 4"):
        distributed.shard(10, Dist(0, 4))


def test_rank_seeds_differ_and_rank_0_keeps_the_seed():
    seeds = [distributed.rank_seed(7, r) for r in range(8)]
    assert seeds[0] == 7 and len(set(seeds)) == 8


def test_a_single_process_distributed_run_is_the_run_kit(tmp_path, capsys):
    plain = tiny_train(TinyConfig(out=tmp_path / "a", quiet=True, epochs=2))
    assert plain["step"] == 10 and plain["stopped_by"] == "epochs"
    assert (tmp_path / "a" / "last.safetensors").is_file()
    ckpt = load_checkpoint(tmp_path / "a" / "last.safetensors")
    assert "world_size" not in ckpt.metrics
    distributed.main_print("printed", dist=Dist(1, 2))
    distributed.main_print("shown", dist=Dist(0, 2))
    assert capsys.readouterr().out == "shown\n"


# --------------------------------------------------------------------------------------------------
# two processes (torchrun, gloo)
# --------------------------------------------------------------------------------------------------


def test_two_processes_take_the_single_process_steps_and_resume_on_any_number(tmp_path):
    """A single-process run stopped by --max-steps at step 3 is resumed by two processes with a
    --minutes budget, rank 0's clock running (1 s per reading) and rank 1's standing still:
    rank 1 starts from the state rank 0 restored; both stop at the same step, by --minutes,
    without waiting for each other; until then they take the single-process run's steps (the
    same losses up to float rounding, the same weights on both ranks); only rank 0 writes; the
    collective helpers answer on both ranks; and one process resumes the run again and ends
    where the straight single-process run does."""
    single = tiny_train(TinyConfig(out=tmp_path / "one", quiet=True, epochs=3))
    assert single["step"] == 15
    out = tmp_path / "mixed"
    tiny_train(TinyConfig(out=out, quiet=True, epochs=3, max_steps=3))
    ranks = _torchrun(tmp_path, out, epochs=3, minutes=0.1, clock_steps=[1.0, 0.0], resume=True)
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    stop = ranks[0]["step"]
    assert 5 < stop < 15 and ranks[1]["step"] == stop
    for r in ranks:
        assert r["stopped_by"] == "minutes"
        assert _close(r["losses"], single["losses"][3:stop])
        assert r["mean_of_ranks"] == 0.5 and r["from_rank_0"] == {"r": 0}
    assert ranks[0]["weight"] == ranks[1]["weight"]  # the same start, and DDP keeps it so
    ckpt = load_checkpoint(out / "last.safetensors", load_train_state=True)
    assert ckpt.step == stop and ckpt.metrics["world_size"] == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )
    assert not list(Path(tempfile.gettempdir()).glob("dgm-rank1-*"))  # rank 1 wrote nothing
    resumed = tiny_train(TinyConfig(out=out, quiet=True, epochs=3, resume=True))
    assert resumed["step"] == 15
    assert _close(resumed["weight"] + resumed["bias"], single["weight"] + single["bias"])


def test_a_used_run_folder_stops_every_rank_with_one_line(tmp_path):
    """Rank 0's refusal reaches rank 1, so that both stop with the same message (neither waits
    for the other)."""
    tiny_train(TinyConfig(out=tmp_path / "used", quiet=True, epochs=1))
    reports, finished = _launch(tmp_path, tmp_path / "used", {})
    for proc, _, err in finished:
        assert proc.returncode != 0 and "already holds a run: pass --resume to continue it" in err
    assert not list(reports.iterdir())


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    _worker(sys.argv[2:])
