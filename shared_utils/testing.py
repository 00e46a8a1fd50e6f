"""Test helpers for projects: is a resumed run the same run, a crash at a given step, a fake clock.

Origin: written for dgm-course (MIT licence).

Every project tests that its training resumes exactly (the run kit's promise); with these helpers
the test is one call:

    def test_resume_is_exact(tmp_path, monkeypatch):
        assert_resume_is_exact(train, small_cfg, tmp_path, monkeypatch, stop_at=5, kill_at=8,
                               minutes=0.1)

runs a straight run, then one stopped mid-epoch by ``--max-steps``, one killed between two
saves and one stopped by ``--minutes``, resumes each, and compares them bit for bit.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from shared_utils import runs
from shared_utils.checkpoints import load_checkpoint


def _assert_equal_tree(a: Any, b: Any, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys differ"
        for key in a:
            _assert_equal_tree(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_run(a: str | os.PathLike, b: str | os.PathLike) -> None:
    """The runs in folders ``a`` and ``b`` are bitwise the same: weights, every saved object's
    state (optimizers, EMA, ...), RNG states, counters, project state, log.csv and eval.csv."""
    a, b = Path(a), Path(b)
    ca = load_checkpoint(a / "last.safetensors", load_train_state=True)
    cb = load_checkpoint(b / "last.safetensors", load_train_state=True)
    assert ca.step == cb.step, f"steps {ca.step} != {cb.step}"
    _assert_equal_tree(ca.state_dict, cb.state_dict, "weights")
    for part in ("objects", "rng", "counters", "state", "window"):
        _assert_equal_tree(ca.train_state[part], cb.train_state[part], part)
    for name in ("log.csv", "eval.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs"


def dies_of_sigkill(fn: Callable[[], Any], env: dict[str, str] | None = None, timeout=300.0):
    """Run ``fn()`` in a forked child with ``env`` added to its environment; assert that the
    child died of SIGKILL (the test hooks of the run kit and the checkpoints send it)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.environ.update(env or {})
            fn()
        finally:
            os._exit(3)  # reached only if no SIGKILL came
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"the child did not finish in {timeout} s")
        time.sleep(0.005)
    assert (
        os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    ), f"the child ended with status {status}, not by SIGKILL"


def killed_at_step(train: Callable[[Any], Any], cfg: Any, step: int, timeout: float = 300) -> None:
    """Run ``train(cfg)`` in a forked child that SIGKILLs itself right after step ``step``'s loop
    body (before any save of that step), as a crash would; assert that it died that way."""
    dies_of_sigkill(lambda: train(cfg), {runs.KILL_AT_STEP_ENV: str(step)}, timeout)


def assert_resume_is_exact(
    train: Callable[[Any], Any],
    make_cfg: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: Any,
    *,
    stop_at: int,
    kill_at: int,
    minutes: float,
) -> None:
    """The run kit's promise for one project: a run stopped mid-epoch by ``--max-steps`` at
    ``stop_at``, one killed after step ``kill_at``, and one stopped by ``--minutes`` (on the fake
    clock) are each resumed, and each equals the straight run bit for bit.

    ``make_cfg(out, **overrides)`` returns the project's small test config with run folder ``out``;
    pick ``stop_at`` inside an epoch, ``kill_at`` after a save but before the next, and
    ``minutes`` (at one fake second per clock reading) so that the run stops before its end.
    """
    straight = tmp_path / "straight"
    train(make_cfg(straight))
    total = load_checkpoint(straight / "last.safetensors").step
    train(make_cfg(tmp_path / "steps", max_steps=stop_at))
    train(make_cfg(tmp_path / "steps", resume=True))
    assert_same_run(straight, tmp_path / "steps")
    killed_at_step(train, make_cfg(tmp_path / "killed"), step=kill_at)
    train(make_cfg(tmp_path / "killed", resume=True))
    assert_same_run(straight, tmp_path / "killed")
    fake_wall_clock(monkeypatch)
    train(make_cfg(tmp_path / "minutes", minutes=minutes))
    stopped = load_checkpoint(tmp_path / "minutes" / "last.safetensors")
    assert stopped.metrics["stopped_by"] == "minutes" and 0 < stopped.step < total, stopped.step
    train(make_cfg(tmp_path / "minutes", resume=True))
    assert_same_run(straight, tmp_path / "minutes")


def fake_wall_clock(monkeypatch: Any, seconds_per_reading: float = 1.0) -> None:
    """Make the run kit's wall clock advance ``seconds_per_reading`` at every reading, so that a
    ``--minutes`` budget stops a run at the same step on every machine."""
    clock = {"t": 0.0}

    def wall() -> float:
        clock["t"] += seconds_per_reading
        return clock["t"]

    monkeypatch.setattr(runs, "_wall", wall)


def nan_on_call(fn: Callable[..., Any], call: int) -> Callable[..., Any]:
    """``fn`` whose ``call``-th call (counting from 1) returns its loss times NaN: a loss function
    to monkeypatch into a training loop to test its divergence stop. A ``(loss, stats)`` result
    keeps its stats."""
    import functools

    count = {"n": 0}

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        count["n"] += 1
        out = fn(*args, **kwargs)
        if count["n"] != call:
            return out
        if isinstance(out, tuple):
            return (out[0] * float("nan"), *out[1:])
        return out * float("nan")

    return wrapped


def assert_last_save_kept(out: str | os.PathLike, step: int) -> None:
    """After a run stopped by divergence: ``out/last.safetensors`` is the save of ``step``, all
    its weights finite, and log.csv has no row past it."""
    from shared_utils.training import read_csv_log

    ckpt = load_checkpoint(Path(out) / "last.safetensors", load_train_state=True)
    assert ckpt.step == step, ckpt.step
    assert all(torch.isfinite(v).all() for v in ckpt.state_dict.values())
    assert max(row["step"] for row in read_csv_log(Path(out) / "log.csv")) <= step
