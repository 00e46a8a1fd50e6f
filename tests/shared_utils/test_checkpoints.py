"""shared_utils.checkpoints: round trips, crash safety under SIGKILL, validated loads."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time

import pytest
import torch
from torch import nn

from shared_utils import checkpoints
from shared_utils.checkpoints import (
    SAVE_PHASES,
    CheckpointError,
    backup_path,
    load_checkpoint,
    load_model,
    printable,
    read_sidecar,
    save_checkpoint,
    sidecar_path,
    train_state_path,
    update_metrics,
)
from shared_utils.testing import dies_of_sigkill


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3), nn.BatchNorm1d(3))


class Net(nn.Module):
    """A model rebuilt from keyword arguments, as every project's is."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.fc = nn.Linear(width, width)


def _save(path, model=None, step=1, **kw):
    kw.setdefault("model_config", {"width": 8})
    return save_checkpoint(path, model if model is not None else _model(), step=step, **kw)


def test_weights_round_trip(tmp_path):
    model = _model(0)
    path = save_checkpoint(
        tmp_path / "m.safetensors",
        model,
        model_config={"hidden": 8},
        train_config={"lr": 0.1},
        step=7,
        metrics={"nll": 1.5},
        command="x",
    )
    fresh = _model(1)
    ckpt = load_checkpoint(path, fresh)
    x = torch.randn(5, 4)
    model.eval(), fresh.eval()
    assert torch.equal(model(x), fresh(x))
    assert ckpt.model == {"hidden": 8} and ckpt.train == {"lr": 0.1}
    assert ckpt.step == 7 and ckpt.metrics == {"nll": 1.5} and ckpt.command == "x"
    assert not train_state_path(path).exists() and not ckpt.recovered


def test_load_model_rebuilds_from_the_sidecar(tmp_path):
    net = Net(5)
    path = save_checkpoint(tmp_path / "n.safetensors", net, model_config={"width": 5}, step=1)
    again = load_model(path, Net)
    assert not again.training and again.fc.in_features == 5
    assert torch.equal(again.fc.weight, net.fc.weight)


@pytest.fixture
def flush_off():
    """Start with subnormals kept (torch's default) and leave the process so."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormals to zero")
    yield
    torch.set_flush_denormal(False)


def test_load_model_flushes_subnormal_weights_in_arithmetic(tmp_path, flush_off):
    net = Net(5)
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.weight[0, 0] = 1e-39  # subnormal in float32
    path = save_checkpoint(tmp_path / "n.safetensors", net, model_config={"width": 5}, step=1)
    assert (net.fc.weight[0, 0] * 1.0).item() > 0  # kept before any load
    again = load_model(path, Net)
    assert torch.equal(again.fc.weight, net.fc.weight)  # the stored weights are untouched
    assert (again.fc.weight[0, 0] * 1.0).item() == 0.0  # but computed with as zero


def test_resumable_state_round_trip_continues_identically(tmp_path):
    def step(model, opt, x):
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        opt.step()

    x = torch.randn(16, 4)
    model = _model(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        step(model, opt, x)
    path = tmp_path / "run" / "last.safetensors"
    state = {"optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "epoch": 1}
    _save(path, model, step=3, train_state=state)
    step(model, opt, x)  # the uninterrupted run goes one step further

    resumed = _model(5)
    ckpt = load_checkpoint(path, resumed, load_train_state=True)
    opt2 = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    opt2.load_state_dict(ckpt.train_state["optimizer"])
    assert ckpt.train_state["epoch"] == 1
    assert ckpt.train_state["rng"].dtype == torch.uint8
    step(resumed, opt2, x)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_sidecar_contents_and_metrics_update(tmp_path):
    path = _save(tmp_path / "m.safetensors", command="cmd")
    side = read_sidecar(path)
    assert len(side["sha256"]) == 64 and side["weights"] == "m.safetensors"
    assert side["format_version"] == 2 and side["model"] == {"width": 8}
    update_metrics(path, test_nll=88.1)
    assert load_checkpoint(path).metrics == {"test_nll": 88.1}


def test_corrupted_weights_are_refused_and_the_model_untouched(tmp_path):
    path = _save(tmp_path / "m.safetensors", command="retrain")
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x55
    path.write_bytes(bytes(blob))
    model = _model(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="corrupted.*retrain"):
        load_checkpoint(path, model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_missing_or_broken_sidecar_is_reported(tmp_path):
    path = _save(tmp_path / "m.safetensors")
    sidecar_path(path).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    sidecar_path(path).unlink()
    with pytest.raises(CheckpointError, match="m.json is missing"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_wrong_architecture_is_reported_and_model_untouched(tmp_path):
    path = _save(tmp_path / "m.safetensors")
    other = nn.Sequential(nn.Linear(4, 9), nn.Tanh(), nn.Linear(9, 3), nn.BatchNorm1d(3))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path, other)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = _save(tmp_path / "m.safetensors", model_config={"v": 1})
    good = path.read_bytes()
    with pytest.raises(TypeError):
        _save(path, _model(1), step=2, model_config={"v": 2}, train_state={"bad": object()})
    assert path.read_bytes() == good
    assert json.loads(sidecar_path(path).read_text())["model"] == {"v": 1}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_path_must_be_safetensors(tmp_path):
    with pytest.raises(ValueError, match=".safetensors"):
        _save(tmp_path / "m.pt")


def test_files_get_ordinary_permissions(tmp_path):
    path = _save(tmp_path / "m.safetensors", train_state={"x": torch.zeros(1)})
    update_metrics(path, nll=1.0)
    mask = os.umask(0)
    os.umask(mask)
    for p in (path, sidecar_path(path), train_state_path(path)):
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask


# --------------------------------------------------------------------------------------------------
# crash safety: a real SIGKILL of a child process at each phase of a save
# --------------------------------------------------------------------------------------------------


def _tagged(value: float) -> nn.Module:
    model = nn.Linear(3, 3)
    with torch.no_grad():
        model.weight.fill_(value)
        model.bias.fill_(value)
    return model


def _save_tagged(path, step: int, with_state: bool = True):
    """A checkpoint whose weights, training state and step all carry the number ``step``."""
    state = {"tag": torch.full((4,), float(step)), "step": step} if with_state else None
    return save_checkpoint(
        path, _tagged(step), model_config={}, step=step, train_state=state, command=f"s{step}"
    )


def _assert_consistent(path, steps: set[int], with_state: bool = True) -> int:
    ckpt = load_checkpoint(path, load_train_state=with_state)
    assert ckpt.step in steps
    assert torch.all(ckpt.state_dict["weight"] == ckpt.step)
    if with_state:
        assert ckpt.train_state["step"] == ckpt.step
        assert torch.all(ckpt.train_state["tag"] == ckpt.step)
    return ckpt.step


@pytest.mark.parametrize("with_state", [True, False], ids=["resumable", "weights-only"])
@pytest.mark.parametrize("phase", SAVE_PHASES)
def test_sigkill_at_each_phase_leaves_a_loadable_checkpoint(tmp_path, phase, with_state):
    path = tmp_path / "last.safetensors"
    _save_tagged(path, 1, with_state)
    dies_of_sigkill(lambda: _save_tagged(path, 2, with_state), {checkpoints.KILL_HOOK_ENV: phase})
    new = SAVE_PHASES.index(phase) >= SAVE_PHASES.index("published-sidecar")
    if not with_state and phase == "backup-train-state":
        new = False
    step = _assert_consistent(path, {2} if new else {1}, with_state)
    assert load_checkpoint(path).recovered == (
        phase in ("published-weights", "published-train-state")
    ), step
    # the next save completes and leaves exactly the checkpoint's files
    _save_tagged(path, 3, with_state)
    assert _assert_consistent(path, {3}, with_state) == 3
    names = {p.name for p in tmp_path.iterdir()}
    expected = {"last.safetensors", "last.json"} | (
        {"last.train.safetensors"} if with_state else set()
    )
    assert names == expected


def test_a_save_interrupted_twice_still_has_the_checkpoint_before(tmp_path):
    path = tmp_path / "last.safetensors"
    _save_tagged(path, 1)
    env = {checkpoints.KILL_HOOK_ENV: "published-weights"}
    dies_of_sigkill(lambda: _save_tagged(path, 2), env)
    dies_of_sigkill(lambda: _save_tagged(path, 3), env)  # the main set is broken: keep the backup
    assert _assert_consistent(path, {1}) == 1 and backup_path(path).exists()


def _kill_loop(path, kills: int, seed: int = 0) -> dict[str, int]:
    """Kill a child that saves in a tight loop at random instants; check every survivor."""
    rng = random.Random(seed)
    _save_tagged(path, 1)
    outcomes = {"kills": 0, "new": 0, "previous": 0, "recovered": 0}
    for i in range(kills):
        before = load_checkpoint(path).step
        pid = os.fork()
        if pid == 0:
            try:
                step = before + 1
                while True:
                    _save_tagged(path, step)
                    step += 1
            finally:
                os._exit(3)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        ckpt = load_checkpoint(path, load_train_state=True)
        assert torch.all(ckpt.state_dict["weight"] == ckpt.step), i
        assert torch.all(ckpt.train_state["tag"] == ckpt.step), i
        outcomes["kills"] += 1
        outcomes["new" if ckpt.step > before else "previous"] += 1
        outcomes["recovered"] += ckpt.recovered
    _save_tagged(path, 10**6)
    leftovers = sorted(p.name for p in path.parent.iterdir())
    assert leftovers == ["last.json", "last.safetensors", "last.train.safetensors"], leftovers
    return outcomes


@pytest.mark.slow
def test_random_kills_during_a_tight_save_loop(tmp_path):
    outcomes = _kill_loop(tmp_path / "last.safetensors", kills=25)
    print(outcomes)
    assert outcomes["kills"] == 25


# --------------------------------------------------------------------------------------------------
# malformed input: one CheckpointError line naming the file and the fix
# --------------------------------------------------------------------------------------------------


def _sidecar_edit(path, edit) -> None:
    side = sidecar_path(path)
    data = json.loads(side.read_text())
    side.write_text(edit(data) if callable(edit) else edit)


MALFORMED = {
    "not an object": "[1, 2, 3]",
    "deeply nested": "[" * 100_000 + "]" * 100_000,
    "nested object": lambda d: json.dumps(
        {**d, "metrics": json.loads('{"a":' * 200 + "1" + "}" * 200)}
    ),
    "step is text": lambda d: json.dumps({**d, "step": "abc"}),
    "step is a bool": lambda d: json.dumps({**d, "step": True}),
    "model is a list": lambda d: json.dumps({**d, "model": [1, 2]}),
    "sha256 not hex": lambda d: json.dumps({**d, "sha256": "z" * 64}),
    "no sha256": lambda d: json.dumps({k: v for k, v in d.items() if k != "sha256"}),
    "old layout": lambda d: json.dumps(
        {**{k: v for k, v in d.items() if k != "model"}, "config": {}}
    ),
    "not utf-8": "\xff\xfe".encode("latin-1").decode("latin-1"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_sidecars_give_one_checkpoint_error_line(tmp_path, case):
    path = _save(tmp_path / "m.safetensors", train_state={"x": torch.zeros(2)})
    if case == "not utf-8":
        sidecar_path(path).write_bytes(b"\xff\xfe{")
    else:
        _sidecar_edit(path, MALFORMED[case])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, load_train_state=True)
    message = str(err.value)
    assert "m.json" in message and "\n" not in message and len(message) < 600


def test_a_huge_sidecar_is_refused_without_parsing(tmp_path):
    path = _save(tmp_path / "m.safetensors")
    sidecar_path(path).write_text('{"pad": "' + "x" * (checkpoints.MAX_SIDECAR_BYTES + 1) + '"}')
    with pytest.raises(CheckpointError, match="too large"):
        read_sidecar(path)


def test_a_pickle_in_place_of_the_training_state_is_never_unpickled(tmp_path):
    path = _save(tmp_path / "m.safetensors", train_state={"x": torch.zeros(2)})
    ts = train_state_path(path)
    torch.save({"x": torch.zeros(2)}, ts)  # a pickle (torch zip) under the safetensors name
    with pytest.raises(CheckpointError, match="m.train.safetensors is corrupted"):
        load_checkpoint(path, load_train_state=True)
    # and even with a matching sha256 in the sidecar it is not parsed as a pickle
    _sidecar_edit(path, lambda d: json.dumps({**d, "train_state_sha256": _sha(ts)}))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(path, load_train_state=True)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_loading_never_unpickles_weights(tmp_path):
    path = tmp_path / "evil.safetensors"
    torch.save({"w": torch.zeros(2)}, path)
    sidecar_path(path).write_text(json.dumps({"model": {}, "step": 0, "sha256": _sha(path)}))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(path)


def test_valid_header_with_a_broken_body_is_refused(tmp_path):
    path = _save(tmp_path / "m.safetensors")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 16])  # header intact, body cut short
    _sidecar_edit(path, lambda d: json.dumps({**d, "sha256": _sha(path)}))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(path)


def test_a_directory_in_a_files_place(tmp_path):
    path = _save(tmp_path / "m.safetensors", train_state={"x": torch.zeros(2)})
    train_state_path(path).unlink()
    train_state_path(path).mkdir()
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(path, load_train_state=True)
    sidecar_path(path).unlink()
    sidecar_path(path).mkdir()
    with pytest.raises(CheckpointError, match="m.json is a directory"):
        load_checkpoint(path)


def test_a_training_state_structure_naming_absent_tensors(tmp_path):
    path = _save(tmp_path / "m.safetensors", train_state={"x": torch.zeros(2)})
    _sidecar_edit(path, lambda d: json.dumps({**d, "train_state": {"__tensor__": "nope"}}))
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(path, load_train_state=True)


def test_unknown_or_huge_model_config_is_refused_before_allocating(tmp_path):
    path = save_checkpoint(tmp_path / "n.safetensors", Net(4), model_config={"width": 4}, step=1)
    _sidecar_edit(path, lambda d: json.dumps({**d, "model": {"width": 4, "depth": 3}}))
    with pytest.raises(CheckpointError, match="do not fit Net"):
        load_model(path, Net)
    # 10^6 x 10^6 floats would be 4 TB: refused on the meta device, nothing is allocated
    _sidecar_edit(path, lambda d: json.dumps({**d, "model": {"width": 10**6}}))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_model(path, Net)
    _sidecar_edit(path, lambda d: json.dumps({**d, "model": {"width": "wide"}}))
    with pytest.raises(CheckpointError, match="n.json"):
        load_model(path, Net)


def test_the_command_is_printed_escaped(tmp_path):
    evil = "python -m x \x1b[2J\x1b]0;owned\x07 --resume"
    path = _save(tmp_path / "m.safetensors", command=evil)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert "\x1b" not in str(err.value) and "\\x1b[2J" in str(err.value)
    assert printable("a\nb\tc") == "a\\nb\\tc"
