"""The training run and the commands: exact resume, the divergence stop, two processes (torchrun,
gloo) against one, and train / evaluate / sample with a stand-in for the sample-quality metrics."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from ddpm import draw as draw_command
from ddpm import evaluate as evaluate_command
from ddpm import model as model_module
from ddpm import sample as sample_command
from ddpm.model import DDPM
from ddpm.train import TrainConfig, learning_rate, main, train

from shared_utils.checkpoints import load_checkpoint, load_model, save_checkpoint
from shared_utils.runs import RunError
from shared_utils.testing import assert_last_save_kept, assert_resume_is_exact, nan_on_call
from shared_utils.training import read_csv_log

torch.set_num_threads(1)  # the course machine's cores are shared
PROJECT = Path(__file__).resolve().parents[1]
ROOT = PROJECT.parents[1]
TINY = ["--T", "50", "--base-channels", "8", "--channel-mults", "1", "1", "2", "--groups", "4"]


def _cfg(out, **kw) -> TrainConfig:
    """64 images in batches of 16: 4 steps per epoch, 3 epochs; saves every 3 steps; a tiny
    network (T = 50) in bf16 autocast, evaluated (L_simple, FID of 8 samples) every epoch."""
    settings = dict(
        limit_train=64,
        batch_size=16,
        epochs=3,
        save_every=3,
        log_every=2,
        eval_n=8,
        eval_fid_n=8,
        eval_sampling_steps=3,
        T=50,
        base_channels=8,
        channel_mults=[1, 1, 2],
        groups=4,
        autocast="bf16",
        quiet=True,
    )
    return TrainConfig(out=out, **{**settings, **kw})


@pytest.fixture
def fake_sample_quality(monkeypatch):
    """A stand-in for shared_utils.sample_quality (its feature network is not needed here): the
    "FID" is the samples' mean, the class probabilities favour the class of the brightest row."""
    calls: list[tuple[str, int, str]] = []

    def check(samples: torch.Tensor, dataset: str, what: str) -> None:
        assert samples.dtype == torch.float32 and samples.shape[1:] == (1, 28, 28)
        assert 0 <= samples.min() <= samples.max() <= 1
        calls.append((what, samples.shape[0], dataset))

    def metrics(value: float) -> dict:
        return {
            "fid": value,
            "kid": 0.001,
            "kid_std": 0.0001,
            "precision": 0.5,
            "recall": 0.25,
            "coverage_entropy": 3.0,
            "class_histogram": [0.1] * 10,
        }

    def image_features(samples, dataset):
        check(samples, dataset, "features")
        probs = torch.nn.functional.one_hot(samples.mean((1, 3)).argmax(1) % 10, 10).float()
        return samples.flatten(1)[:, :4], probs

    def fid(samples, dataset):
        check(samples, dataset, "fid")
        return float(samples.mean())

    fake = types.ModuleType("shared_utils.sample_quality")
    fake.fid = fid
    fake.image_features = image_features
    fake.reference_features = lambda dataset, split="test": (
        torch.zeros(50, 4),
        torch.zeros(50, 10),
    )
    fake.metrics_from_features = lambda real, fake, seed=0: metrics(float(fake[0].mean()))
    # the floor at 10,000 samples scores 1.5; below, the first n training images' "FID" (0)
    fake.floor = lambda dataset, n=None: metrics(1.5 if n is None or n >= 10_000 else 0.0)
    fake.table = lambda rows, floor: "| " + " | ".join(rows) + " | floor |"
    monkeypatch.setitem(sys.modules, "shared_utils.sample_quality", fake)
    return calls


def test_resume_is_exact_after_max_steps_a_kill_and_minutes(
    tmp_path, monkeypatch, fake_sample_quality
):
    """Stopped mid-epoch by --max-steps (at step 5), killed after step 8 (the last save: step 6)
    and stopped by --minutes, each resumed: bitwise the straight run (weights, Adam, the EMA,
    the RNGs, log.csv and eval.csv with its L_simple and FID)."""
    assert_resume_is_exact(train, _cfg, tmp_path, monkeypatch, stop_at=5, kill_at=8, minutes=0.1)
    ckpt = load_checkpoint(tmp_path / "straight" / "last.safetensors", load_train_state=True)
    assert {"optimizer", "ema"} == set(ckpt.train_state["objects"])
    rows = read_csv_log(tmp_path / "straight" / "eval.csv")
    assert [r["step"] for r in rows] == [4, 8, 12] and {"test_l_simple", "fid"} <= set(rows[0])
    logs = read_csv_log(tmp_path / "straight" / "log.csv")
    assert {"loss", "grad_norm", "lr"} <= set(logs[0])
    warmup = [learning_rate(step, _cfg("x")) for step in (1, 2)]  # a row: the mean of 2 steps
    assert logs[0]["lr"] == pytest.approx(sum(warmup) / 2) and warmup[0] < warmup[1] < 1e-3


def test_a_nan_loss_stops_training_before_the_next_save(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(model_module, "l_simple", nan_on_call(model_module.l_simple, call=5))
    out = tmp_path / "nan"
    with pytest.raises(RunError, match="diverged at step 5: loss = nan"):
        train(_cfg(out, save_every=2, eval_n=0, eval_fid_n=0))
    assert_last_save_kept(out, step=4)
    # the command line: one line on stderr, exit code 1
    monkeypatch.setattr(model_module, "l_simple", nan_on_call(model_module.l_simple, call=3))
    argv = [
        "--limit-train",
        "64",
        "--batch-size",
        "16",
        *TINY,
        "--eval-n",
        "0",
        "--eval-fid-n",
        "0",
    ]
    assert main([*argv, "--quiet", "--out", str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged at step 3" in err[0]


def test_two_processes_take_the_steps_of_one_process(tmp_path):
    """``torchrun --nproc_per_node=2 -m ddpm.train`` (gloo, CPU) with the same global batch as a
    single-process run: the same weights, moving average and Adam state up to float rounding;
    rank 0 alone wrote the run folder, with the same logs."""
    common = ["--limit-train", "64", "--batch-size", "16", "--epochs", "2", *TINY]
    common += ["--eval-n", "8", "--eval-fid-n", "0", "--quiet", "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=os.pathsep.join([str(PROJECT), str(ROOT)]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "ddpm.train", *common, "--out", str(tmp_path / "two")]
    done = subprocess.run(cmd, env=env, cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one = load_checkpoint(tmp_path / "one" / "last.safetensors", load_train_state=True)
    two = load_checkpoint(tmp_path / "two" / "last.safetensors", load_train_state=True)
    assert one.step == two.step == 8 and two.metrics["world_size"] == 2
    for name, value in one.state_dict.items():
        assert torch.allclose(value, two.state_dict[name], atol=1e-6), name
    for part in ("ema", "optimizer"):
        a, b = one.train_state["objects"][part], two.train_state["objects"][part]
        flat_a = torch.cat([v.flatten().float() for v in _tensors(a)])
        flat_b = torch.cat([v.flatten().float() for v in _tensors(b)])
        assert torch.allclose(flat_a, flat_b, atol=1e-6), part
    assert torch.equal(one.train_state["rng"]["generator"], two.train_state["rng"]["generator"])
    rows_one, rows_two = (read_csv_log(tmp_path / r / "eval.csv") for r in ("one", "two"))
    assert len(rows_one) == len(rows_two) == 2
    assert all(
        abs(a["test_l_simple"] - b["test_l_simple"]) < 1e-5
        for a, b in zip(rows_one, rows_two, strict=True)
    )


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for key in sorted(tree, key=str):
            yield from _tensors(tree[key])
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _tensors(item)


def test_train_evaluate_and_sample_commands(tmp_path, capsys, fake_sample_quality):
    common = ["--dataset", "mnist", "--limit-train", "64", "--batch-size", "16", "--epochs", "1"]
    common += [*TINY, "--eval-n", "8", "--eval-fid-n", "6", "--eval-sampling-steps", "2", "--quiet"]
    ship = tmp_path / "tiny_mnist.safetensors"
    assert main([*common, "--out", str(tmp_path / "a"), "--ship", str(ship)]) == 0
    ckpt = load_checkpoint(ship)
    assert ckpt.step == 4 and ckpt.train_state is None and ckpt.train["dataset"] == "mnist"
    assert ckpt.model == DDPM(T=50, base_channels=8, channel_mults=[1, 1, 2], groups=4).config()
    assert ("fid", 6, "mnist") in fake_sample_quality
    assert (tmp_path / "a" / "samples" / "step_0000004.png").is_file()
    # shipped: the moving average, not the live weights of last.safetensors
    shipped, live = load_model(ship, DDPM), load_model(tmp_path / "a" / "last.safetensors", DDPM)
    assert not torch.equal(shipped.net.head.weight, live.net.head.weight)
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "a")]) == 1  # a used folder: one line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a run" in err[0] and "--resume" in err[0]

    quick = [str(ship), "--num-samples", "10", "--steps", "2"]
    assert evaluate_command.main(quick) == 0
    out = capsys.readouterr().out
    assert "| tiny_mnist | floor |" in out and "DDIM, 2 steps, eta 0, unconditional" in out
    assert "ddim2_eta0_n10" not in load_checkpoint(ship).metrics  # no --write
    assert evaluate_command.main([*quick, "--classes", "3", "7", "--guidance", "1", "--write"]) == 0
    saved = load_checkpoint(ship).metrics["ddim2_eta0_cond_w1_n10"]
    assert saved["settings"]["classes"] == [3, 7] and 0 <= saved["class_accuracy"] <= 1
    assert saved["floor"]["fid"] == pytest.approx(0.0)  # at 10 samples: 10 training images
    results = ["--write", "--results", str(tmp_path / "results")]
    sweep = [str(ship), "--sweep", "steps", "--sweep-n", "6", "--sweep-steps", "1", "3", *results]
    assert evaluate_command.main(sweep) == 0
    data = json.loads((tmp_path / "results" / "tiny_mnist_sweep_steps.json").read_text())
    assert [(p["sampler"], p["steps"]) for p in data["points"]] == [
        ("ddim", 1),
        ("ddim", 3),
        ("ddpm", 1),
        ("ddpm", 3),
    ]
    assert all(p["images_per_s"] > 0 and p["n"] == 6 for p in data["points"])
    more = [str(ship), "--sweep", "steps", "--sweep-n", "4", "--sweep-steps", "3", "5"]
    assert evaluate_command.main([*more, "--sweep-samplers", "ddpm", *results]) == 0
    data = json.loads((tmp_path / "results" / "tiny_mnist_sweep_steps.json").read_text())
    assert [(p["sampler"], p["steps"], p["n"]) for p in data["points"]] == [
        ("ddim", 1, 6),
        ("ddim", 3, 6),
        ("ddpm", 1, 6),
        ("ddpm", 3, 4),
        ("ddpm", 5, 4),
    ]  # a point measured again replaces the old one
    guide = [str(ship), "--sweep", "guidance", "--sweep-n", "6", "--steps", "2"]
    assert evaluate_command.main([*guide, "--guidance-scales", "0", "2", *results]) == 0
    data = json.loads((tmp_path / "results" / "tiny_mnist_sweep_guidance.json").read_text())
    assert [p["w"] for p in data["points"]] == [0.0, 2.0, None]  # None: the unconditional row
    assert all(0 <= p["class_accuracy"] <= 1 for p in data["points"] if p["w"] is not None)
    assert set(load_checkpoint(ship).metrics["sweep_steps"]["fid"]) == {
        "ddim1_n6",
        "ddim3_n6",
        "ddpm1_n6",
        "ddpm3_n4",
        "ddpm5_n4",
    }
    capsys.readouterr()
    bpd = [str(ship), "--bpd", "--eval-n", "6", "--strata", "3", "--bpd-check-n", "2", "--write"]
    assert evaluate_command.main(bpd) == 0
    assert "check on the first 2 images" in capsys.readouterr().out
    details = load_checkpoint(ship).metrics["bpd_details"]
    assert details["n"] == 6 and details["bpd"] > 0 and details["check"]["n"] == 2

    png = tmp_path / "grid.png"
    argv = [str(ship), "--num-samples", "4", "--steps", "2", "--out", str(png)]
    assert sample_command.main([*argv, "--classes", "1", "--guidance", "3"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    missing = str(tmp_path / "missing.safetensors")
    assert evaluate_command.main([missing]) == 1 and sample_command.main([missing]) == 1
    assert sample_command.main([str(ship), "--guidance", "2"]) == 1
    assert evaluate_command.main([str(ship), "--steps", "51"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert "does not exist" in err[0] and "--guidance needs --classes" in err[2]


def test_samples_drawn_elsewhere_are_the_sets_evaluate_scores(tmp_path, capsys, monkeypatch):
    """ddpm.draw stores exactly the sets (settings, seed, x_T, noise) that the evaluation
    commands ask for, as 8-bit images; evaluate --samples-from scores them instead of drawing."""
    torch.manual_seed(0)
    model = DDPM(T=50, base_channels=8, channel_mults=[1, 1, 2], groups=4)
    ship = tmp_path / "tiny_mnist.safetensors"
    save_checkpoint(
        ship, model, model_config=model.config(), train_config={"dataset": "mnist"}, step=1
    )
    out = tmp_path / "drawn"
    argv = [str(out), str(ship), "--device", "cpu", "--num-samples", "5", "--sweep-n", "3"]
    argv += ["--sweep-steps", "2", "4", "--guidance-scales", "0", "1.5"]
    assert draw_command.main(argv) == 0
    files = sorted(out.glob("*.npz"))
    assert [f.name for f in files] == [f"tiny_mnist_{g}.npz" for g in ("guidance", "main", "steps")]
    stored = evaluate_command.DrawnSamples(files)
    assert len(stored.entries) == 2 + 3 + 4  # main 2, guidance 1 + 2 scales, steps 2 x 2
    # the conditional table's set, with the options evaluate builds from its flags
    parser = argparse.ArgumentParser()
    sample_command.add_sampler_arguments(parser)
    options = sample_command.sampler_options(parser.parse_args(["--classes", *map(str, range(10))]))
    samples, speed, device = stored.get(5, 0, options)
    direct = model_module.draw(load_model(ship, DDPM), 5, 0, **options)
    assert device == "cpu" and speed > 0
    assert torch.equal(samples, (direct.clamp(0, 1) * 255).round() / 255)
    assert stored.get(6, 0, options) is None and stored.get(5, 1, options) is None

    # evaluate reads every set of a sweep from the files and draws none itself
    def no_drawing(*args, **kwargs):
        raise AssertionError("evaluate drew samples although --samples-from holds them")

    monkeypatch.setattr(evaluate_command, "draw", no_drawing)
    monkeypatch.setattr(
        evaluate_command, "score", lambda s, d, seed: (_metrics(s), s[:, 0, 0, :10])
    )
    monkeypatch.setattr(
        evaluate_command.sample_quality(), "floor", lambda dataset, n=None: _metrics(torch.zeros(1))
    )
    sweep = [str(ship), "--sweep", "steps", "--sweep-n", "3", "--sweep-steps", "2", "4"]
    assert evaluate_command.main([*sweep, "--samples-from", *map(str, files)]) == 0
    assert capsys.readouterr().out.count("read from --samples-from") == 4
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert evaluate_command.main([*sweep, "--samples-from", str(bad)]) == 1
    assert "not a file of drawn samples" in capsys.readouterr().err


def _metrics(samples: torch.Tensor) -> dict:
    value = float(samples.mean())
    return {
        "fid": value,
        "kid": 0.0,
        "kid_std": 0.0,
        "precision": 0.5,
        "recall": 0.5,
        "coverage_entropy": 3.0,
        "class_histogram": [0.1] * 10,
    }
