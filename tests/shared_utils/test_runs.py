"""shared_utils.runs: flags from configs, start-or-resume, exact mid-epoch resume, budgets, errors."""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from shared_utils.checkpoints import load_checkpoint
from shared_utils.runs import (
    Run,
    RunConfig,
    RunError,
    cli,
    command_line,
    config_parser,
    epoch_order,
    flag,
    parse_config,
)
from shared_utils.testing import assert_same_run, fake_wall_clock, killed_at_step
from shared_utils.training import EMA, adam


@dataclass
class ToyConfig(RunConfig):
    hidden: int = flag(8, "hidden units")
    sizes: list[int] = flag([3, 4], "a list flag")
    lr: float = flag(0.05, "learning rate")
    batch_size: int = flag(6, "batch size")
    noisy: bool = flag(False, "a boolean flag")
    epochs: int = flag(3, "epochs")
    out: Path = flag(Path("runs/toy"), "run folder")


class Toy(nn.Module):
    def __init__(self, hidden: int = 8):
        super().__init__()
        self.hidden = hidden
        self.net = nn.Sequential(
            nn.Linear(4, hidden), nn.Dropout(0.3), nn.Tanh(), nn.Linear(hidden, 1)
        )

    def config(self) -> dict:
        return {"hidden": self.hidden}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def toy_train(cfg: ToyConfig) -> Path:
    """A loop that draws from every RNG the kit restores: torch (dropout), the run's generator,
    NumPy and Python, and keeps an EMA and a project value in run.state."""
    run = Run(cfg)
    gen = torch.Generator().manual_seed(123)
    x, y = torch.randn(40, 4, generator=gen), torch.randn(40, 1, generator=gen)
    model = Toy(cfg.hidden)
    optimizer = adam(model.parameters(), lr=cfg.lr)
    ema = EMA(model, 0.9)
    run.start(model, model.config(), optimizer=optimizer, ema=ema)
    run.state.setdefault("best", float("inf"))
    for xb, yb in run.batches(x, y, batch_size=cfg.batch_size):
        noise = torch.randn(xb.shape, generator=run.generator) * 0.01
        scale = 1.0 + 0.01 * float(np.random.rand()) + 0.01 * random.random()  # noqa: NPY002
        loss = ((model(xb + noise) - yb) ** 2).mean() * scale
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(model)
        run.log(loss=loss.item())
        if run.epoch_done:
            with torch.no_grad():
                valid = ((ema.shadow.net(x) - y) ** 2).mean().item()
            run.state["best"] = min(run.state["best"], valid)
            run.log_eval(valid=valid)
    return run.finish(metrics={"best": run.state["best"]})


def _cfg(out: Path, **kw) -> ToyConfig:
    return ToyConfig(out=out, log_every=2, save_every=4, quiet=True, **kw)


def test_flags_come_from_the_config_and_commands_parse_back():
    cfg = parse_config(
        ToyConfig, ["--hidden", "5", "--sizes", "1", "2", "--noisy", "--minutes", "2.5"]
    )
    assert (cfg.hidden, cfg.sizes, cfg.noisy, cfg.minutes) == (5, [1, 2], True, 2.5)
    assert isinstance(cfg.out, Path) and cfg.max_steps is None
    command = command_line(cfg)
    assert command.startswith("python -m ") and "--hidden 5" in command and "--lr" not in command
    again = parse_config(ToyConfig, command.split()[3:])
    assert again == cfg
    help_text = config_parser(ToyConfig).format_help()
    assert "wall-clock budget of the whole run" in help_text and "--save-every" in help_text
    with pytest.raises(SystemExit):
        parse_config(ToyConfig, ["--hidden", "x"])


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    a = epoch_order(50, seed=1, epoch=2)
    assert sorted(a.tolist()) == list(range(50))
    assert torch.equal(a, epoch_order(50, seed=1, epoch=2))
    assert not torch.equal(a, epoch_order(50, seed=1, epoch=3))
    assert not torch.equal(a, epoch_order(50, seed=2, epoch=2))


@pytest.mark.parametrize("stop", [5, 7, 13])  # mid-epoch (7 steps per epoch) and on a boundary
def test_stopped_by_max_steps_and_resumed_equals_a_straight_run(tmp_path, stop):
    toy_train(_cfg(tmp_path / "straight"))
    toy_train(_cfg(tmp_path / "split", max_steps=stop))
    assert load_checkpoint(tmp_path / "split" / "last.safetensors").step == stop
    toy_train(_cfg(tmp_path / "split", resume=True))
    assert_same_run(tmp_path / "straight", tmp_path / "split")


def test_minutes_is_the_budget_of_the_whole_run(tmp_path, monkeypatch):
    fake_wall_clock(monkeypatch)  # every reading of the clock is one second later
    toy_train(_cfg(tmp_path / "straight"))
    toy_train(_cfg(tmp_path / "split", minutes=0.25))  # 15 fake seconds: stops mid-epoch
    first = load_checkpoint(tmp_path / "split" / "last.safetensors", load_train_state=True)
    assert 0 < first.step < 21 and first.metrics["stopped_by"] == "minutes"
    assert first.train_state["counters"]["batch_in_epoch"] != 0
    # the same budget again: the time already spent counts, so nothing more is trained
    toy_train(_cfg(tmp_path / "split", minutes=0.25, resume=True))
    assert load_checkpoint(tmp_path / "split" / "last.safetensors").step == first.step
    toy_train(_cfg(tmp_path / "split", resume=True))
    assert_same_run(tmp_path / "straight", tmp_path / "split")


def test_sigkill_between_saves_then_resume_equals_a_straight_run(tmp_path):
    toy_train(_cfg(tmp_path / "straight"))
    killed = tmp_path / "killed"
    killed_at_step(toy_train, _cfg(killed), step=10)  # the last save before the kill: step 8
    assert load_checkpoint(killed / "last.safetensors").step == 8
    assert "10," in (killed / "log.csv").read_text()  # a row written after the last save ...
    toy_train(_cfg(killed, resume=True))  # ... is dropped on resume, not duplicated
    assert_same_run(tmp_path / "straight", killed)


def test_a_used_folder_needs_resume_and_resume_needs_a_run(tmp_path, capsys):
    toy_train(_cfg(tmp_path / "a", max_steps=3))
    with pytest.raises(RunError, match="pass --resume to continue it, or choose a new --out"):
        toy_train(_cfg(tmp_path / "a"))
    with pytest.raises(RunError, match="nothing to resume .* drop --resume"):
        toy_train(_cfg(tmp_path / "empty", resume=True))
    with pytest.raises(RunError, match=r"differ from the saved run \(hidden: saved 8, given 9"):
        toy_train(_cfg(tmp_path / "a", resume=True, hidden=9))
    with pytest.raises(RunError, match="lr: saved 0.05, given 0.1"):
        toy_train(_cfg(tmp_path / "a", resume=True, lr=0.1))
    # budgets and the run folder's plumbing may change on resume
    toy_train(_cfg(tmp_path / "a", resume=True, max_steps=5, threads=1, eval_n=3))
    assert load_checkpoint(tmp_path / "a" / "last.safetensors").step == 5
    with pytest.raises(RunError, match="--save-every must be a positive integer"):
        toy_train(ToyConfig(out=tmp_path / "b", save_every=0))
    with pytest.raises(RunError, match="--device gpu0 is not a device"):
        toy_train(_cfg(tmp_path / "d", device="gpu0"))
    with pytest.raises(RunError, match="--batch-size must be a positive integer"):
        toy_train(_cfg(tmp_path / "c", batch_size=0))
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_cli_turns_bad_input_into_one_line_and_exit_code(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli(toy_train, ToyConfig, ["--out", out, "--max-steps", "2", "--quiet"]) == 0
    assert cli(toy_train, ToyConfig, ["--out", out, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--resume" in err


def test_command_history_and_metrics_survive_resumes(tmp_path):
    toy_train(_cfg(tmp_path / "r", max_steps=4))
    toy_train(_cfg(tmp_path / "r", resume=True))
    ckpt = load_checkpoint(tmp_path / "r" / "last.safetensors")
    first, second = ckpt.command.split(" && ")
    assert "--max-steps 4" in first and "--resume" in second
    assert ckpt.metrics["steps"] == 21 and ckpt.metrics["stopped_by"] == "epochs"
    assert ckpt.metrics["last_eval"]["epoch"] == 3.0 and "best" in ckpt.metrics
    assert ckpt.model == {"hidden": 8} and "hidden" not in ckpt.train
    assert ckpt.train["lr"] == 0.05 and ckpt.train["out"] == str(tmp_path / "r")


def test_ship_writes_weights_only_with_the_run_record(tmp_path):
    ship = tmp_path / "checkpoints" / "toy.safetensors"
    path = toy_train(_cfg(tmp_path / "r", max_steps=3, ship=ship))
    assert path == ship
    ckpt = load_checkpoint(ship)
    assert ckpt.step == 3 and ckpt.model == {"hidden": 8} and ckpt.train_state is None
    assert not ship.with_name("toy.train.safetensors").exists()
    assert sorted(p.name for p in ship.parent.iterdir()) == ["toy.json", "toy.safetensors"]


def test_module_name_of_a_config_run_as_main(monkeypatch):
    class Spec:
        name = "toy.train"

    monkeypatch.setattr(sys.modules["__main__"], "__spec__", Spec(), raising=False)
    Main = type("Main", (ToyConfig,), {"__module__": "__main__"})
    assert command_line(Main()).startswith("python -m toy.train")


def test_sample_cli_draws_a_seeded_grid_and_refuses_bad_input(tmp_path, capsys):
    from shared_utils.checkpoints import save_checkpoint
    from shared_utils.runs import sample_cli

    class Pixels(torch.nn.Module):
        def __init__(self, p: float = 0.5):
            super().__init__()
            self.logit = torch.nn.Parameter(torch.tensor(p).logit())

        def sample(self, n, generator=None):
            probs = torch.sigmoid(self.logit).expand(n, 1, 4, 4)
            return torch.bernoulli(probs, generator=generator)

    ckpt = tmp_path / "pixels.safetensors"
    save_checkpoint(ckpt, Pixels(0.3), model_config={"p": 0.3}, step=0)
    png = tmp_path / "grid.png"
    assert (
        sample_cli("Doc.", "prog", Pixels, [str(ckpt), "--num-samples", "9", "--out", str(png)])
        == 0
    )
    assert png.exists() and "9 samples" in capsys.readouterr().out
    drawn = []

    def draw(model, args, generator):
        drawn.append(torch.rand(3, generator=generator))
        return model.sample(args.num_samples, generator=generator)

    for _ in range(2):
        assert sample_cli("Doc.", "prog", Pixels, [str(ckpt), "--out", str(png)], draw=draw) == 0
    assert torch.equal(drawn[0], drawn[1])  # the same --seed, the same random numbers
    assert sample_cli("Doc.", "prog", Pixels, [str(ckpt), "--num-samples", "0"]) == 1
    assert "--num-samples" in capsys.readouterr().err
    assert sample_cli("Doc.", "prog", Pixels, [str(tmp_path / "missing.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
