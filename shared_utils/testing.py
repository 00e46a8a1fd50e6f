"""Test helpers for projects: is a resumed run the same run, a crash at a given step, a fake clock.

Origin: written for dgm-course (MIT licence).

Every project tests that its training resumes exactly (the run kit's promise); these helpers make
that test a few lines long:

    train(cfg(tmp_path / "straight"))
    train(cfg(tmp_path / "split", max_steps=5))              # stopped mid-epoch ...
    train(cfg(tmp_path / "split", resume=True))              # ... and resumed
    assert_same_run(tmp_path / "straight", tmp_path / "split")
    killed_at_step(train, cfg(tmp_path / "killed"), step=7)  # SIGKILL between two saves
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


def killed_at_step(train: Callable[[Any], Any], cfg: Any, step: int, timeout: float = 300) -> None:
    """Run ``train(cfg)`` in a forked child that SIGKILLs itself right after step ``step``'s loop
    body (before any save of that step), as a crash would; assert that it died that way."""
    pid = os.fork()
    if pid == 0:
        try:
            os.environ[runs.KILL_AT_STEP_ENV] = str(step)
            train(cfg)
        finally:
            os._exit(3)  # reached only if the run ended before the step
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"the run did not reach step {step} in {timeout} s")
        time.sleep(0.01)
    assert (
        os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    ), f"the run ended with status {status} before step {step}"


def fake_wall_clock(monkeypatch: Any, seconds_per_reading: float = 1.0) -> None:
    """Make the run kit's wall clock advance ``seconds_per_reading`` at every reading, so that a
    ``--minutes`` budget stops a run at the same step on every machine."""
    clock = {"t": 0.0}

    def wall() -> float:
        clock["t"] += seconds_per_reading
        return clock["t"]

    monkeypatch.setattr(runs, "_wall", wall)
