"""Test helpers for projects: is a resumed run the same run, a crash at a given step, a fake clock.

Origin: written for dgm-course (MIT licence).

Every project tests that its training resumes exactly (the run kit's promise); with these helpers
the test is one call:

    def test_resume_is_exact(tmp_path, monkeypatch):
        assert_resume_is_exact(train, small_cfg, tmp_path, monkeypatch, stop_at=5, kill_at=8,
                               minutes=0.1)

runs a straight run, then one stopped mid-epoch by ``--max-steps``, one killed between two
saves and one stopped by ``--minutes``, resumes each, and compares them bit for bit.

``ContractTests`` is the whole plumbing suite of a project written on the template's contract
(``course new``): its ``tests/test_plumbing.py`` subclasses it and names its package.
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


class ContractTests:
    """The plumbing tests of a project that follows the template's contract: ``<package>.model``
    (``Model``, ``ModelConfig``, ``DATASET``, ``METRIC``, ``TEST_CONFIG``), ``<package>.train``
    (``TrainConfig``, ``train``, ``main``), ``<package>.evaluate`` and ``<package>.sample``.

    A project's ``tests/test_plumbing.py`` subclasses it and names its package; pytest collects
    the inherited tests (the model's interface, a falling loss on a tiny batch, the checkpoint
    round trip, exact resume after --max-steps, a kill and --minutes, the commands and their
    one-line errors)::

        class TestPlumbing(ContractTests):
            package = "ddpm"

    A project whose commands take more options overrides the hooks below (``train_settings``,
    ``train_args``, ``evaluate_args``, ``sample_args``, ``written_metric``) or a test; tests of
    its own go beside the class.
    """

    package: str = ""  # the project's import name
    train_args: tuple[str, ...] = ()  # extra options of the train command in the test
    evaluate_args: tuple[str, ...] = ()  # extra options of the evaluate command in the test
    sample_args: tuple[str, ...] = ()  # extra options of the sample command in the test

    def module(self, name: str) -> Any:
        """``<package>.<name>``, imported."""
        import importlib

        return importlib.import_module(f"{self.package}.{name}")

    def small_model(self, seed: int = 0) -> torch.nn.Module:
        """The model of ``TEST_CONFIG``, initialised from ``seed``."""
        from dataclasses import asdict

        m = self.module("model")
        torch.manual_seed(seed)
        return m.Model(**asdict(m.ModelConfig(**m.TEST_CONFIG)))

    def batch(self, n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random grey-level images as model inputs of ``DATASET``, and labels."""
        from shared_utils.data import model_inputs

        gen = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
        inputs = model_inputs(self.module("model").DATASET, images, gen)
        return inputs, torch.randint(0, 10, (n,), generator=gen)

    def train_settings(self) -> dict[str, Any]:
        """The tiny runs' settings: 200 images in batches of 50 (4 steps per epoch), 3 epochs,
        a save every 3 steps."""
        return dict(limit_train=200, batch_size=50, eval_n=20, epochs=3, save_every=3)

    def train_config(self, out: Path, **overrides: Any) -> Any:
        """``TrainConfig`` of a tiny run in ``out``."""
        m = self.module("model")
        settings = {**self.train_settings(), **overrides}
        return self.module("train").TrainConfig(
            out=out, log_every=2, quiet=True, **m.TEST_CONFIG, **settings
        )

    def written_metric(self) -> str:
        """The sidecar key that ``evaluate --eval-n 20 --write`` adds."""
        return f"test_{self.module('model').METRIC}_first20"

    def test_model_follows_the_contract(self) -> None:
        import json
        from dataclasses import asdict

        from shared_utils.training import evaluating

        m = self.module("model")
        assert m.Model().config() == asdict(m.ModelConfig())  # same arguments, same defaults
        model = self.small_model()
        config = model.config()
        assert json.loads(json.dumps(config)) == config
        assert m.Model(**config).config() == config
        x, y = self.batch(8)
        loss = model.loss(x, y)
        assert loss.shape == () and torch.isfinite(loss) and loss.requires_grad
        with evaluating(model):
            metrics = model.evaluate(x, y)
            samples = model.sample(5, generator=torch.Generator().manual_seed(0))
            again = model.sample(5, generator=torch.Generator().manual_seed(0))
        assert all(v.shape == (8,) and torch.isfinite(v).all() for v in metrics.values())
        assert m.METRIC in metrics
        assert samples.shape == (5, 1, 28, 28) and torch.equal(samples, again)
        assert samples.min() >= 0 and samples.max() <= 1

    def test_loss_decreases_on_a_tiny_batch(self) -> None:
        model = self.small_model()
        optimizer = torch.optim.Adam(model.parameters(), lr=self.module("train").TrainConfig().lr)
        x, y = self.batch(16)
        losses = []
        for _ in range(30):
            loss = model.loss(x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert sum(losses[-5:]) < sum(losses[:5]), losses

    def test_checkpoint_round_trip(self, tmp_path: Path) -> None:
        from shared_utils.checkpoints import load_model, save_checkpoint
        from shared_utils.training import evaluating

        model = self.small_model()
        with torch.no_grad():
            for p in model.parameters():  # weights unlike a fresh model's
                p.add_(0.1 * torch.randn_like(p))
        path = save_checkpoint(
            tmp_path / "m.safetensors", model, model_config=model.config(), step=3
        )
        loaded = load_model(path, self.module("model").Model)
        assert not loaded.training and loaded.config() == model.config()
        weights, loaded_weights = model.state_dict(), loaded.state_dict()
        assert weights.keys() == loaded_weights.keys()
        assert all(torch.equal(weights[k], loaded_weights[k]) for k in weights)
        x, y = self.batch(4)
        with evaluating(model), evaluating(loaded):
            torch.manual_seed(0)  # a stochastic estimator draws the same numbers for both
            expected = model.evaluate(x, y)
            torch.manual_seed(0)
            got = loaded.evaluate(x, y)
            samples = [
                m.sample(3, generator=torch.Generator().manual_seed(1)) for m in (model, loaded)
            ]
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[k], got[k]) for k in expected)
        assert torch.equal(*samples)

    def test_resume_is_exact_after_max_steps_a_kill_and_minutes(
        self, tmp_path: Path, monkeypatch: Any
    ) -> None:
        """Stopped mid-epoch by --max-steps (at step 5), killed after step 8 (the last save: step
        6) and stopped by --minutes, each resumed: bitwise the straight run."""
        assert_resume_is_exact(
            self.module("train").train,
            self.train_config,
            tmp_path,
            monkeypatch,
            stop_at=5,
            kill_at=8,
            minutes=0.1,
        )

    def test_train_evaluate_and_sample_commands(self, tmp_path: Path, capsys: Any) -> None:
        import shlex

        from shared_utils.checkpoints import load_model
        from shared_utils.runs import command_line

        m, t = self.module("model"), self.module("train")
        evaluate_main, sample_main = self.module("evaluate").main, self.module("sample").main
        common = ["--limit-train", "100", "--batch-size", "50", "--eval-n", "20", "--epochs", "1"]
        common += ["--quiet", *shlex.split(command_line(t.TrainConfig(**m.TEST_CONFIG)))[3:]]
        common += self.train_args
        ship = tmp_path / "model.safetensors"
        assert t.main([*common, "--out", str(tmp_path / "a"), "--ship", str(ship)]) == 0
        ckpt = load_checkpoint(ship)
        assert ckpt.step == 2 and ckpt.train["batch_size"] == 50
        assert ckpt.train["dataset"] == m.DATASET
        assert ckpt.train_state is None and "--limit-train 100" in ckpt.command
        assert load_model(ship, m.Model).config() == ckpt.model
        # a used folder, nothing to resume, other options on --resume: one line each, exit code 1
        assert t.main([*common, "--out", str(tmp_path / "a")]) == 1
        assert t.main([*common, "--out", str(tmp_path / "b"), "--resume"]) == 1
        assert t.main([*common, "--lr", "0.5", "--out", str(tmp_path / "a"), "--resume"]) == 1
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 3 and "--resume" in err[0] and "nothing to resume" in err[1]
        assert "lr: saved" in err[2]

        argv = [str(ship), "--eval-n", "20", *self.evaluate_args]
        assert evaluate_main(argv) == 0
        assert not any(k.endswith("_first20") for k in load_checkpoint(ship).metrics)  # no --write
        assert evaluate_main([*argv, "--write"]) == 0
        assert self.written_metric() in load_checkpoint(ship).metrics
        png = tmp_path / "samples.png"
        argv = [str(ship), "--num-samples", "4", "--out", str(png), *self.sample_args]
        assert sample_main(argv) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        capsys.readouterr()
        missing = str(tmp_path / "missing.safetensors")
        assert evaluate_main([missing]) == 1
        assert sample_main([missing]) == 1
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2 and all("does not exist" in line for line in err)
