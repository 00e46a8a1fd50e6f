"""The run kit: start or resume a training run, exactly, with crash-safe saves and budgets.

Origin: written for dgm-course (MIT licence).

Not a Trainer: the training loop stays in each project's ``train.py``, with the paper's loss step
in plain sight. :class:`Run` only keeps what a loop would otherwise carry by hand, the same way in
every project:

* a run folder ``--out`` holding ``last.safetensors`` (resumable, crash-safe: see
  :mod:`shared_utils.checkpoints`), ``log.csv`` (training rows), ``eval.csv`` (end-of-epoch
  rows) and ``time.csv`` (wall and CPU seconds; kept apart so that the other two logs of a
  resumed run are byte for byte those of a straight one);
* exact resume, mid-epoch included: weights, every object with a ``state_dict`` (optimizers,
  schedulers, EMA, a discriminator), the global torch, NumPy and Python RNGs, the run's
  generator, the position in the epoch (each epoch's data order is a function of the seed and
  the epoch), the counters, the half-filled log window and the time already spent, so that
  ``--minutes`` is the budget of the whole run;
* stopping at ``--epochs``, ``--max-steps``, ``--minutes`` or ``--cpu-minutes``, whichever comes
  first, with a save at the stop and every ``--save-every`` steps;
* the command that produced the run, and one-line errors (:class:`RunError`) for bad input.

A ``train.py`` reads::

    @dataclass
    class TrainConfig(RunConfig):          # flags come from the fields: --lr, --batch-size, ...
        lr: float = flag(1e-3, "Adam learning rate")

    def train(cfg: TrainConfig) -> Path:
        run = Run(cfg)                     # refuses a used --out without --resume, and the reverse
        model = Model(...).to(run.device)
        optimizer = adam(model.parameters(), lr=cfg.lr)
        run.start(model, model.config(), optimizer=optimizer)   # restores all of it on --resume
        for x in run.batches(x_train, batch_size=cfg.batch_size):
            loss = model.loss(x.to(run.device))                 # the paper's objective
            optimizer.zero_grad(); loss.backward(); optimizer.step()
            run.log(loss=loss.item())
            if run.epoch_done:
                run.log_eval(valid_nll=...)
        return run.finish()

    def main(argv=None) -> int:
        return cli(train, TrainConfig, argv)
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shlex
import signal
import sys
import time
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared_utils.checkpoints import (
    CheckpointError,
    _fit,
    backup_path,
    load_checkpoint,
    load_model,
    printable,
    save_checkpoint,
    sidecar_path,
)
from shared_utils.training import CSVLogger, evaluating, pick_device, progress, set_threads

LOGS = ("log", "eval", "time")
# Settings that may differ when a run is resumed: they steer or observe the run, they do not
# define what is trained. Every other field of the config must match the saved run.
RUN_CONTROL = frozenset(
    {
        "out",
        "resume",
        "ship",
        "epochs",
        "max_steps",
        "minutes",
        "cpu_minutes",
        "save_every",
        "log_every",
        "eval_n",
        "threads",
        "device",
        "quiet",
    }
)


KILL_AT_STEP_ENV = "DGM_TEST_KILL_AT_STEP"  # test hook: SIGKILL after this step's loop body


def _wall() -> float:
    """Wall clock of the budgets (a function, so that tests can replace it)."""
    return time.perf_counter()


def _cpu() -> float:
    """CPU clock of the budgets: all threads of this process."""
    return time.process_time()


class RunError(ValueError):
    """Bad input to a run (folder, flags, resume); the message says what to do instead."""


def flag(default: Any, help: str, *, choices: typing.Sequence[Any] | None = None) -> Any:
    """A config field that becomes a command-line flag with this help text (and choices)."""
    metadata = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class RunConfig:
    """The settings every project's training run has; a project's config adds its own fields."""

    out: Path = flag(Path("runs/run"), "run folder: last.safetensors, log.csv, eval.csv, time.csv")
    resume: bool = flag(False, "continue the run in --out exactly where its last save left it")
    ship: Path | None = flag(
        None, "at the end, also write the weights without training state here (checkpoints/)"
    )
    epochs: int = flag(10, "stop after this many epochs (may be raised on --resume)")
    max_steps: int | None = flag(None, "stop after this many optimizer steps in all")
    minutes: float | None = flag(None, "wall-clock budget of the whole run, resumed parts included")
    cpu_minutes: float | None = flag(
        None, "CPU-time budget of the whole run (all threads), resumed parts included"
    )
    save_every: int = flag(500, "optimizer steps between resumable saves (and one at the stop)")
    log_every: int = flag(100, "optimizer steps averaged into one row of log.csv")
    eval_n: int = flag(1000, "held-out images scored at the end of every epoch (0: none)")
    limit_train: int | None = flag(None, "train on the first N training images only")
    seed: int = flag(0, "seed of every random number of the run")
    threads: int = flag(1, "torch CPU threads")
    device: str = flag("auto", "cpu, cuda, mps, or auto (the first available of cuda, mps, cpu)")
    quiet: bool = flag(False, "no progress bar and no per-epoch lines")


# --------------------------------------------------------------------------------------------------
# config <-> flags <-> command
# --------------------------------------------------------------------------------------------------


def _metadata(cls: type, name: str) -> dict[str, Any]:
    """A field's metadata, from the nearest class in the MRO that gave it some (re-declared
    fields in a project's config may leave the help text to RunConfig)."""
    for klass in cls.__mro__:
        for f in getattr(klass, "__dataclass_fields__", {}).values():
            if f.name == name and f.metadata:
                return dict(f.metadata)
    return {}


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(the type without ``| None``, whether None was allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _default(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def config_parser(cls: type, description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one ``--flag-name`` per field of the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    parser = argparse.ArgumentParser(
        prog=f"python -m {_module_name(cls)}",
        description=description,
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in fields(cls):
        meta = _metadata(cls, f.name)
        opt = "--" + f.name.replace("_", "-")
        base, _ = _unwrap(hints[f.name])
        kwargs: dict[str, Any] = {"default": _default(f), "help": meta.get("help", " ")}
        if base is bool:
            kwargs["action"] = (
                "store_true" if not kwargs["default"] else argparse.BooleanOptionalAction
            )
        elif typing.get_origin(base) is list:
            kwargs.update(nargs="+", type=typing.get_args(base)[0])
        else:
            kwargs["type"] = base
        if meta.get("choices"):
            kwargs["choices"] = list(meta["choices"])
        parser.add_argument(opt, dest=f.name, **kwargs)
    return parser


def parse_config(cls: type, argv: list[str] | None = None, description: str | None = None):
    """``cls(**flags)`` from the command line (``sys.argv[1:]`` when ``argv`` is None)."""
    args = config_parser(cls, description).parse_args(sys.argv[1:] if argv is None else argv)
    return cls(**vars(args))


def _module_name(cls: type) -> str:
    module = cls.__module__
    if module == "__main__":  # python -m pkg.train: the module runs as __main__
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else "train"
    return module


def command_line(cfg: Any) -> str:
    """The command that runs ``cfg``: ``python -m <module>`` and every non-default flag."""
    parts = ["python", "-m", _module_name(type(cfg))]
    for f in fields(cfg):
        value, opt = getattr(cfg, f.name), "--" + f.name.replace("_", "-")
        if value == _default(f):
            continue
        if isinstance(value, bool):
            parts.append(opt if value else "--no-" + opt[2:])
        elif isinstance(value, (list, tuple)):
            parts += [opt, *map(_flag_text, value)]
        else:
            parts += [opt, _flag_text(value)]
    return shlex.join(parts)


def _flag_text(value: Any) -> str:
    """How a value is typed on the command line: 40.0 as 40, 0.001 as 0.001."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def cli(train: Callable[[Any], Any], cls: type, argv: list[str] | None = None) -> int:
    """Parse flags into ``cls``, call ``train(cfg)``; bad input becomes one line and exit code 1."""
    from shared_utils.data import DataError  # here: data imports torchvision, slow to load

    description = (sys.modules[train.__module__].__doc__ or "").strip().split("\n")[0] or None
    cfg = parse_config(cls, argv, description)
    try:
        train(cfg)
    except (RunError, CheckpointError, DataError) as err:
        print(f"error: {printable(err, 2000)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"interrupted: continue from the last save with the same command and --resume "
            f"(run folder {printable(cfg.out)})",
            file=sys.stderr,
        )
        return 130
    return 0


# --------------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------------


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {
            "version": py_version,
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["gauss"]))  # noqa: NPY002
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give restored optimizer state (e.g. Adam's moments) its parameter's memory layout.

    A checkpoint stores tensors contiguous; a parameter may be channels-last. Fused Adam pairs
    state and parameter element by element in memory, so a layout mismatch would silently mix up
    elements after a resume.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    if value.stride() != p.stride():
                        state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of epoch ``epoch``: a permutation of ``range(n)`` fixed by (seed, epoch)."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
    return torch.randperm(n, generator=gen)


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------


class Run:
    """The state of one training run in the folder ``cfg.out``; see the module docstring."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.last = self.out / "last.safetensors"
        self._validate(cfg)
        self._resumed = None
        if cfg.resume:
            if not (
                sidecar_path(self.last).exists() or sidecar_path(backup_path(self.last)).exists()
            ):
                raise RunError(
                    f"nothing to resume in {printable(self.out)} (no last.safetensors): drop "
                    "--resume to start a new run there."
                )
            self._resumed = load_checkpoint(self.last, load_train_state=True)
        elif self.out.is_dir() and any(
            (self.out / name).exists()
            for name in ("last.safetensors", "last.json", "log.csv", "eval.csv")
        ):
            raise RunError(
                f"{printable(self.out)} already holds a run: pass --resume to continue it, or "
                "choose a new --out (or delete that folder)."
            )
        elif self.out.exists() and not self.out.is_dir():
            raise RunError(f"--out {printable(self.out)} is a file; give a folder for the run.")
        try:
            self.device = pick_device(cfg.device)
        except RuntimeError:
            raise RunError(
                f"--device {printable(cfg.device, 40)} is not a device: use cpu, cuda, mps or auto"
            ) from None
        set_threads(cfg.threads)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)  # noqa: NPY002 - seeds code that uses the legacy RNG
        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed + 0x9E3779B9)
        self.step = 0  # optimizer steps taken (in the loop body: counting the current one)
        self.epoch = 0  # the current epoch, from 0
        self.batch_in_epoch = 0  # batches of the current epoch taken (the current one included)
        self.steps_per_epoch = 0
        self.epoch_done = False  # in the loop body: this batch is the last of its epoch
        self.state: dict[str, Any] = {}  # the project's own resumable values (e.g. best score)
        self.metrics: dict[str, Any] = {}  # kept across resumes; written into the final sidecar
        self.stopped_by: str | None = None
        self.commands = [command_line(cfg)]
        self._window: dict[str, Any] = {"sums": {}, "count": 0}
        self._seconds_before = {"wall": 0.0, "cpu": 0.0}
        self._started = False

    @staticmethod
    def _validate(cfg: RunConfig) -> None:
        positive = ("save_every", "log_every", "threads", "batch_size")
        for name in positive:
            value = getattr(cfg, name, 1)
            if not isinstance(value, int) or value < 1:
                raise RunError(
                    f"--{name.replace('_', '-')} must be a positive integer, not {value!r}"
                )
        for name in ("epochs", "eval_n", "max_steps", "limit_train"):
            value = getattr(cfg, name, 0)
            if value is not None and value < 0:
                raise RunError(f"--{name.replace('_', '-')} must not be negative, not {value!r}")
        for name in ("minutes", "cpu_minutes"):
            value = getattr(cfg, name)
            if value is not None and not (value >= 0 and math.isfinite(value)):
                raise RunError(f"--{name.replace('_', '-')} must be a number of minutes >= 0")

    # -- start / resume ---------------------------------------------------------------------------

    def start(self, model: torch.nn.Module, model_config: dict[str, Any], **stateful: Any) -> None:
        """Register the model (its constructor arguments) and every object with a ``state_dict``
        that must survive a resume; on ``--resume``, load all of them and the RNG states."""
        self.model = model
        self.model_config = dict(model_config)
        self.train_config = {
            k: _jsonable(v) for k, v in asdict(self.cfg).items() if k not in self.model_config
        }
        self._stateful = stateful
        if self._resumed is not None:
            self._restore(self._resumed)
        else:
            self.out.mkdir(parents=True, exist_ok=True)
        self.loggers = {name: CSVLogger(self.out / f"{name}.csv") for name in LOGS}
        self._clock = (_wall(), _cpu())
        self._last_row = (self.step, time.perf_counter())
        self._started = True

    def _restore(self, ckpt) -> None:
        where = printable(self.last)
        saved_train = {k: v for k, v in ckpt.train.items() if k not in RUN_CONTROL}
        given_train = {k: v for k, v in self.train_config.items() if k not in RUN_CONTROL}
        differ = {
            k: (saved, given)
            for part_saved, part_given in (
                (ckpt.model, self.model_config),
                (saved_train, given_train),
            )
            for k in sorted(set(part_saved) | set(part_given))
            if (saved := part_saved.get(k)) != (given := part_given.get(k))
        }
        if differ:
            listing = ", ".join(f"{k}: saved {s!r}, given {g!r}" for k, (s, g) in differ.items())
            raise RunError(
                f"cannot resume {where}: the options differ from the saved run ({printable(listing)}); "
                f"use the same options (see {sidecar_path(self.last).name}) or a new --out."
            )
        _fit(ckpt.path, ckpt.sidecar, self.model, ckpt.state_dict, strict=True)
        ts = ckpt.train_state
        try:
            objects = ts["objects"]
            for name, obj in self._stateful.items():
                obj.load_state_dict(objects[name])
                if isinstance(obj, torch.optim.Optimizer):
                    _match_layouts(obj)
            _set_rng_state(ts["rng"], self.generator)
            counters = ts["counters"]
            self.step, self.epoch = int(counters["step"]), int(counters["epoch"])
            self.batch_in_epoch = int(counters["batch_in_epoch"])
            self._seconds_before = {"wall": float(ts["wall_s"]), "cpu": float(ts["cpu_s"])}
            self.state, self.metrics = dict(ts["state"]), dict(ts["metrics"])
            self._window = {"sums": dict(ts["window"]["sums"]), "count": int(ts["window"]["count"])}
            self.commands = [*ts["commands"], *self.commands]
            log_bytes = {name: int(ts["log_bytes"][name]) for name in LOGS}
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise RunError(
                f"cannot resume {where}: its training state does not fit this run "
                f"({printable(err, 120)}); start a new run with a new --out."
            ) from None
        for name, size in log_bytes.items():  # drop rows written after the last save
            path = self.out / f"{name}.csv"
            if not path.exists() or path.stat().st_size < size:
                raise RunError(
                    f"cannot resume {where}: {path.name} is shorter than at the last save; restore "
                    "it or start a new run with a new --out."
                )
            with open(path, "r+b") as f:
                f.truncate(size)
        if ckpt.recovered:
            print(
                "note: the last save was interrupted; resuming from the one before it",
                file=sys.stderr,
            )
        if not self.cfg.quiet:
            print(
                f"resumed {where} at step {self.step} (epoch {self.epoch}, batch {self.batch_in_epoch})"
            )

    # -- time --------------------------------------------------------------------------------------

    @property
    def wall_seconds(self) -> float:
        """Wall-clock seconds of the whole run, resumed parts included."""
        return self._seconds_before["wall"] + _wall() - self._clock[0]

    @property
    def cpu_seconds(self) -> float:
        """CPU seconds (all threads of this process) of the whole run, resumed parts included."""
        return self._seconds_before["cpu"] + _cpu() - self._clock[1]

    @property
    def progress_epochs(self) -> float:
        """Epochs done as a fraction (the current batch counted as done)."""
        if not self.steps_per_epoch:
            return float(self.epoch)
        return self.epoch + self.batch_in_epoch / self.steps_per_epoch

    def _stop_reason(self) -> str | None:
        cfg = self.cfg
        if self.batch_in_epoch == 0 and self.epoch >= cfg.epochs:
            return "epochs"
        if cfg.max_steps is not None and self.step >= cfg.max_steps:
            return "max_steps"
        if cfg.minutes is not None and self.wall_seconds >= 60.0 * cfg.minutes:
            return "minutes"
        if cfg.cpu_minutes is not None and self.cpu_seconds >= 60.0 * cfg.cpu_minutes:
            return "cpu_minutes"
        return None

    # -- the loop ----------------------------------------------------------------------------------

    def batches(self, *tensors: torch.Tensor, batch_size: int, drop_last: bool = False) -> Iterator:
        """Minibatches (a tensor, or a tuple for several) of rows of ``tensors``, epoch after epoch.

        Each epoch visits the rows in :func:`epoch_order`; a resumed run continues mid-epoch at
        the next batch. After each loop body the step is counted, saved every ``--save-every``
        steps, and the loop ends (with a save) at the first budget reached.
        """
        if not self._started:
            raise RuntimeError("call run.start(model, model_config, ...) before run.batches(...)")
        n = tensors[0].shape[0]
        if any(t.shape[0] != n for t in tensors):
            raise RunError("the tensors given to run.batches have different numbers of rows")
        self.steps_per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
        if self.steps_per_epoch == 0:
            raise RunError(f"--batch-size {batch_size} is larger than the {n} training examples")
        total = self.cfg.epochs * self.steps_per_epoch
        if self.cfg.max_steps is not None:
            total = min(total, self.cfg.max_steps)
        bar = progress(total=total, initial=self.step, unit="step", disable=self.cfg.quiet)
        kill_at = int(os.environ.get(KILL_AT_STEP_ENV, "0") or 0)
        self._bar = bar
        try:
            self.stopped_by = self._stop_reason()
            while self.stopped_by is None:
                order = epoch_order(n, self.cfg.seed, self.epoch)
                for b in range(self.batch_in_epoch, self.steps_per_epoch):
                    idx = order[b * batch_size : (b + 1) * batch_size]
                    self.step += 1
                    self.batch_in_epoch = b + 1
                    self.epoch_done = self.batch_in_epoch == self.steps_per_epoch
                    yield tensors[0][idx] if len(tensors) == 1 else tuple(t[idx] for t in tensors)
                    bar.update(1)
                    if self.step == kill_at:  # test hook: a crash between two saves
                        os.kill(os.getpid(), signal.SIGKILL)
                    if self.epoch_done:
                        self.epoch, self.batch_in_epoch, self.epoch_done = self.epoch + 1, 0, False
                    self.stopped_by = self._stop_reason()
                    if self.stopped_by is not None or self.step % self.cfg.save_every == 0:
                        self.save()
                    if self.stopped_by is not None:
                        return
        finally:
            bar.close()
            self._bar = None

    def log(self, **values: float) -> None:
        """Add this step's values to the log window; every ``--log-every`` steps write their means
        to log.csv (with step and epoch) and the throughput to time.csv."""
        sums = self._window["sums"]
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + float(value)
        self._window["count"] += 1
        if self.step % self.cfg.log_every:
            return
        count = self._window["count"]
        row = {k: v / count for k, v in sums.items()}
        self.loggers["log"].log(step=self.step, epoch=round(self.progress_epochs, 4), **row)
        now = time.perf_counter()
        steps, before = self.step - self._last_row[0], self._last_row[1]
        self.loggers["time"].log(
            step=self.step,
            wall_s=round(self.wall_seconds, 2),
            cpu_s=round(self.cpu_seconds, 2),
            steps_per_s=round(steps / max(now - before, 1e-9), 3),
        )
        self._last_row = (self.step, now)
        self._window = {"sums": {}, "count": 0}

    def log_eval(self, **values: float) -> None:
        """Write an evaluation row (step, epoch, values) to eval.csv, keep it in the metrics as
        ``last_eval``, and print it unless ``--quiet``."""
        row = {"step": self.step, "epoch": round(self.progress_epochs, 4), **values}
        self.loggers["eval"].log(**row)
        self.metrics["last_eval"] = row
        if not self.cfg.quiet:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
            line = f"epoch {row['epoch']:g} step {self.step}: {shown} [{self.wall_seconds:.0f} s]"
            (self._bar.write if getattr(self, "_bar", None) else print)(line)

    # -- saving ------------------------------------------------------------------------------------

    @property
    def command(self) -> str:
        """Every invocation of this run so far, joined by ``&&`` (a resumed run has several)."""
        return " && ".join(self.commands)

    def _train_state(self) -> dict[str, Any]:
        return {
            "objects": {name: obj.state_dict() for name, obj in self._stateful.items()},
            "rng": _rng_state(self.generator),
            "counters": {
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
            },
            "wall_s": self.wall_seconds,
            "cpu_s": self.cpu_seconds,
            "state": self.state,
            "metrics": self.metrics,
            "window": self._window,
            "commands": self.commands,
            "log_bytes": {name: logger.size() for name, logger in self.loggers.items()},
        }

    def save(self) -> Path:
        """Write the resumable ``last.safetensors`` now (crash-safe)."""
        save_checkpoint(
            self.last,
            self.model,
            model_config=self.model_config,
            train_config=self.train_config,
            step=self.step,
            metrics=self.metrics,
            command=self.command,
            train_state=self._train_state(),
        )
        return self.last

    def save_weights(
        self, path: str | Path, metrics: dict[str, Any] | None = None, weights=None
    ) -> Path:
        """A weights-only checkpoint of the model (or of ``weights``, a state dict) at ``path``,
        with this run's configs and command in its sidecar."""
        return save_checkpoint(
            path,
            self.model if weights is None else weights,
            model_config=self.model_config,
            train_config=self.train_config,
            step=self.step,
            metrics={**self.metrics, **(metrics or {})},
            command=self.command,
        )

    def finish(self, metrics: dict[str, Any] | None = None, weights=None) -> Path:
        """End the run: totals into the metrics, ``last.safetensors`` up to date, and the weights
        (the model's, or the state dict ``weights``) written to ``--ship`` if given. Returns the
        shipped path, else ``last.safetensors``."""
        self.metrics.update(metrics or {})
        self.metrics.update(
            steps=self.step,
            epochs=round(self.progress_epochs, 4),
            stopped_by=self.stopped_by,
            train_wall_s=round(self.wall_seconds, 1),
            train_cpu_s=round(self.cpu_seconds, 1),
            threads=self.cfg.threads,
            device=str(self.device),
        )
        self.save()
        result = self.last
        if self.cfg.ship is not None:
            result = self.save_weights(self.cfg.ship, weights=weights)
        if not self.cfg.quiet:
            print(
                f"stopped ({self.stopped_by}) at step {self.step}, epoch {self.progress_epochs:.2f}, "
                f"after {self.wall_seconds / 60:.1f} wall-minutes ({self.cpu_seconds / 60:.1f} "
                f"CPU-minutes); wrote {result}"
            )
        return result


# --------------------------------------------------------------------------------------------------
# evaluation commands
# --------------------------------------------------------------------------------------------------


def _checkpoint_parser(doc: str | None, prog: str) -> argparse.ArgumentParser:
    """A command on a checkpoint: its docstring's first line as description, CHECKPOINT first."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(doc or "").strip().split("\n")[0] or None,
        allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="a .safetensors file with its .json sidecar")
    return parser


def eval_parser(doc: str | None, prog: str) -> argparse.ArgumentParser:
    """The flags every ``evaluate`` command shares; a project adds its estimator's own."""
    parser = _checkpoint_parser(doc, prog)
    parser.add_argument(
        "--eval-n", type=int, default=None, help="first N test images; all if not given"
    )
    parser.add_argument("--batch-size", type=int, default=100, help="images per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="seed of the estimator's sampling")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    parser.add_argument(
        "--write", action="store_true", help="store the results in the checkpoint's sidecar"
    )
    return parser


def subset_suffix(n: int, total: int) -> str:
    """Metric-name suffix of an evaluation on the first ``n`` of ``total`` test images."""
    return "" if n >= total else f"_first{n}"


def eval_cli(
    parser: argparse.ArgumentParser,
    evaluate: Callable[[argparse.Namespace], dict[str, Any]],
    argv: list[str] | None = None,
) -> int:
    """Parse, run ``evaluate(args)`` (it prints its results and returns them as metrics), and
    with ``--write`` add them to the sidecar. Bad input is one line on stderr and exit code 1."""
    from shared_utils.checkpoints import update_metrics
    from shared_utils.data import DataError

    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for name in ("eval_n", "batch_size", "threads"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 1
    set_threads(args.threads)
    args.device = pick_device(args.device)
    try:
        metrics = evaluate(args)
        if args.write and metrics:
            update_metrics(args.checkpoint, **metrics)
            print(f"wrote {', '.join(metrics)} into {sidecar_path(args.checkpoint)}")
    except (RunError, CheckpointError, DataError) as err:
        print(f"error: {printable(err, 2000)}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------------------------------
# sample commands
# --------------------------------------------------------------------------------------------------


def sample_cli(
    doc: str | None,
    prog: str,
    model_class: type,
    argv: list[str] | None = None,
    *,
    draw: Callable[[Any, argparse.Namespace, torch.Generator], torch.Tensor] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """The ``sample`` command every project has: ``CHECKPOINT --num-samples --out --seed
    --threads --device`` (and a project's own flags from ``add_arguments``) -> a PNG grid.

    ``draw(model, args, generator)`` returns images ``[n, C, H, W]`` in [0, 1]; by default
    ``model.sample(args.num_samples, generator=generator)`` in eval mode without gradients. Every
    random number comes from ``generator``, seeded with ``--seed``: the same command draws the
    same images (on the same device). Bad input is one line on stderr and exit code 1.
    """
    from shared_utils.viz import save_images

    parser = _checkpoint_parser(doc, prog)
    parser.add_argument("--num-samples", type=int, default=64, help="images to draw")
    parser.add_argument("--out", type=Path, default=Path("runs/samples.png"), help="PNG grid")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.num_samples < 1 or args.threads < 1:
        print("error: --num-samples and --threads must be at least 1", file=sys.stderr)
        return 1
    set_threads(args.threads)
    device = pick_device(args.device)
    try:
        model = load_model(args.checkpoint, model_class, map_location=device)
        generator = torch.Generator(device=device).manual_seed(args.seed)
        with evaluating(model):
            if draw is None:
                images = model.sample(args.num_samples, generator=generator)
            else:
                images = draw(model, args, generator)
    except (RunError, CheckpointError, ValueError) as err:
        print(f"error: {printable(err, 2000)}", file=sys.stderr)
        return 1
    save_images(images.cpu(), args.out, nrow=math.ceil(math.sqrt(args.num_samples)))
    print(f"wrote {args.out}: {args.num_samples} samples of {args.checkpoint}, seed {args.seed}")
    return 0
