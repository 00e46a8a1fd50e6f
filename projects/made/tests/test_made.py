"""Unit tests of MADE: the autoregressive property, exact normalisation, masks, training and its
exact resume, early stopping, checkpoints, CLI."""

from __future__ import annotations

import itertools
import shlex
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from made.evaluate import main as evaluate_main
from made.model import MADE, made_degrees, made_masks, mask_generator
from made.train import MODEL_FLAGS, TrainConfig, train
from made.train import main as train_main
from torch.autograd.functional import jacobian

from shared_utils.checkpoints import load_checkpoint, load_model, read_sidecar, save_checkpoint
from shared_utils.runs import parse_config
from shared_utils.testing import assert_resume_is_exact, assert_same_run
from shared_utils.training import read_csv_log

torch.set_num_threads(1)  # the course machine's cores are shared
SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "made_2x500_32masks.safetensors"


def dependency_violations(model: MADE, x: torch.Tensor) -> tuple[int, int]:
    """(#forbidden nonzero entries, #allowed nonzero entries) of d logits / d x for one input.

    Allowed: output d may depend on input d' only if d' comes strictly earlier in the ordering.
    """
    jac = jacobian(lambda v: model(v.unsqueeze(0)).squeeze(0), x)  # [D_out, D_in]
    order = model.ordering
    allowed = order[:, None] > order[None, :]
    nonzero = jac.abs() > 0
    return int((nonzero & ~allowed).sum()), int((nonzero & allowed).sum())


@pytest.mark.parametrize(
    "hidden_sizes,direct,order_agnostic",
    [
        ([40], False, False),
        ([40], True, True),
        ([30, 30], False, True),
        ([30, 30], True, False),
        ([25, 25, 25], False, True),
        ([25, 25, 25], True, True),
    ],
)
def test_autoregressive_property_through_jacobian(hidden_sizes, direct, order_agnostic):
    torch.manual_seed(0)
    D = 12
    model = MADE(D, hidden_sizes, num_masks=4, order_agnostic=order_agnostic, direct=direct)
    if direct:
        torch.nn.init.normal_(model.direct.weight)
    orderings = set()
    for index in range(4):  # connectivity-agnostic resampling (and new orderings if asked)
        model.set_mask(index)
        orderings.add(tuple(model.ordering.tolist()))
        for _ in range(3):
            x = torch.rand(D)
            forbidden, allowed = dependency_violations(model, x)
            assert forbidden == 0
            assert allowed > 0  # the check is not vacuous: outputs do depend on earlier inputs
    assert len(orderings) == (4 if order_agnostic else 1)


def test_jacobian_check_catches_a_leaky_mask():
    """If the output mask used >= instead of > (Eq. 13), output d would see x_d: detected."""
    torch.manual_seed(0)
    model = MADE(8, [64], num_masks=1)
    degrees = model.degrees(0)
    leaky = (degrees[0][:, None] >= degrees[-1][None, :]).float()
    model.layers[-1].set_mask(leaky)
    forbidden, _ = dependency_violations(model, torch.rand(8))
    assert forbidden > 0


def test_degrees_follow_the_paper():
    D, gen = 20, torch.Generator().manual_seed(1)
    degrees = made_degrees(D, [50, 50, 50], gen, order_agnostic=True)
    assert sorted(degrees[0].tolist()) == list(range(1, D + 1))
    for prev, cur in itertools.pairwise(degrees):
        assert int(cur.min()) >= int(prev.min()) and int(cur.max()) <= D - 1
    masks, direct = made_masks(degrees)
    connectivity = masks[-1]
    for m in reversed(masks[:-1]):
        connectivity = connectivity @ m  # M^V M^{W^L} ... M^{W^1}: #paths output d <- input d'
    order = degrees[0]
    strictly_earlier = order[:, None] > order[None, :]
    assert torch.all(connectivity[~strictly_earlier] == 0)
    assert torch.all(direct[~strictly_earlier] == 0) and torch.all(direct[strictly_earlier] == 1)


def all_binary_vectors(D: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=D)), dtype=torch.float64)


@pytest.mark.parametrize("num_masks,order_agnostic", [(1, False), (5, True), (5, False)])
def test_exact_normalisation_by_enumeration(num_masks, order_agnostic):
    torch.manual_seed(0)
    D = 6
    model = MADE(D, [16, 16], num_masks=num_masks, order_agnostic=order_agnostic, direct=True)
    model = model.double()
    torch.nn.init.normal_(model.direct.weight)
    xs = all_binary_vectors(D)  # all 2^D configurations
    with torch.no_grad():
        for index in range(num_masks):
            model.set_mask(index)
            total = model.log_prob(xs).exp().sum()
            assert total.item() == pytest.approx(1.0, abs=1e-10)
        ensemble = model.ensemble_log_prob(xs, num_masks).exp().sum()
    assert ensemble.item() == pytest.approx(1.0, abs=1e-10)


def test_an_unmasked_network_is_not_normalised():
    """Sanity check of the enumeration test itself: without masks the outputs see x_d."""
    torch.manual_seed(0)
    model = MADE(6, [16], num_masks=1).double()
    for layer in model.layers:
        layer.mask.fill_(1.0)
    total = model.log_prob(all_binary_vectors(6)).exp().sum().item()
    assert abs(total - 1.0) > 1e-3


def test_loss_decreases_on_a_small_batch():
    torch.manual_seed(0)
    x = (torch.rand(64, 20) < 0.3).float()
    model = MADE(20, [64], num_masks=2, direct=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        start = -model.log_prob(x).mean().item()
    for step in range(60):
        model.set_mask(step % 2)
        loss = -model.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        model.set_mask(0)
        end = -model.log_prob(x).mean().item()
    assert end < start - 1.0


def test_checkpoint_round_trip_rebuilds_the_masks(tmp_path):
    torch.manual_seed(0)
    model = MADE(10, [20, 20], num_masks=6, order_agnostic=True, direct=True, mask_seed=7)
    path = save_checkpoint(tmp_path / "m.safetensors", model, model_config=model.config(), step=3)
    assert not any("mask" in k or "ordering" in k for k in load_checkpoint(path).state_dict)
    restored = load_model(path, MADE)
    x = (torch.rand(5, 10) < 0.5).float()
    for index in range(6):
        model.set_mask(index)
        restored.set_mask(index)
        for a, b in zip(model.layers, restored.layers, strict=True):
            assert torch.equal(a.mask, b.mask)
        assert torch.equal(model.ordering, restored.ordering)
        assert torch.equal(model.direct.mask, restored.direct.mask)
        assert torch.allclose(model.log_prob(x), restored.log_prob(x))
    assert torch.allclose(model.ensemble_log_prob(x, 6), restored.ensemble_log_prob(x, 6))
    # a different mask seed gives different masks
    other = MADE(10, [20, 20], num_masks=6, order_agnostic=True, direct=True, mask_seed=8)
    assert not torch.equal(other.layers[0].mask, restored.layers[0].mask)
    assert mask_generator(7, 1).initial_seed() != mask_generator(7, 2).initial_seed()


def test_made_builds_on_the_meta_device():
    """load_model builds the model under `with torch.device("meta")` first: degrees and masks
    must not need the data of meta tensors, and must be the CPU ones."""
    kwargs = {"hidden_sizes": [30, 30], "num_masks": 3, "order_agnostic": True, "direct": True}
    with torch.device("meta"):
        probe = MADE(12, **kwargs)
        degrees = probe.degrees(2)
        probe.set_mask(2)
    assert all(t.is_meta for t in [*probe.parameters(), *probe.buffers()])
    real = MADE(12, **kwargs)
    for a, b in zip(degrees, real.degrees(2), strict=True):
        assert a.device.type == "cpu" and torch.equal(a, b)


def test_cached_masks_equal_freshly_built_ones():
    kwargs = {"hidden_sizes": [20, 20], "num_masks": 5, "order_agnostic": True, "direct": True}
    cached, rebuilt = MADE(10, **kwargs, mask_seed=3), MADE(10, **kwargs, mask_seed=3)
    rebuilt.mask_cache_bytes = 0
    rebuilt._mask_cache.clear()
    one_index = sum(m.numel() for m in cached.masks(0)[0])
    small = MADE(10, **kwargs, mask_seed=3)
    small.mask_cache_bytes = one_index  # room for one index only: the others are rebuilt
    for index in [0, 1, 2, 3, 4, 3, 0, 4, 1, 2]:  # built the first time, from the cache after
        hidden, direct = made_masks(cached.degrees(index))
        for model in (cached, rebuilt, small):
            model.set_mask(index)
            layers = [*model.layers, model.direct]
            for layer, fresh in zip(layers, [*hidden, direct], strict=True):
                assert layer.mask.dtype == torch.float32 and torch.equal(layer.mask, fresh)
            assert torch.equal(model.ordering, cached.degrees(index)[0])
    assert sorted(cached._mask_cache) == [0, 1, 2, 3, 4] and not rebuilt._mask_cache
    assert list(small._mask_cache) == [0]
    assert all(m.dtype == torch.uint8 for masks, _ in cached._mask_cache.values() for m in masks)


def test_sampling_gives_binary_images_of_the_right_shape():
    model = MADE(12, [20], num_masks=3, order_agnostic=True)
    x = model.sample(4, generator=torch.Generator().manual_seed(0), mask=2)
    assert x.shape == (4, 12) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert model.mask_index == 0


def _cfg(out: Path, **kw) -> TrainConfig:
    """200 images in batches of 50: 4 steps per epoch, 3 epochs, 3 masks; saves every 3 steps."""
    settings = dict(limit_train=200, batch_size=50, hidden_sizes=[32], num_masks=3, eval_n=50)
    settings.update(epochs=3, save_every=3, log_every=2, quiet=True)
    return TrainConfig(out=out, **{**settings, **kw})


def test_resume_is_exact(tmp_path, monkeypatch):
    """Stopped mid-epoch by --max-steps, by a SIGKILL between two saves or by --minutes, then
    resumed: bitwise the straight run (weights, Adam, RNGs, mask cycle, logs)."""
    assert_resume_is_exact(train, _cfg, tmp_path, monkeypatch, stop_at=5, kill_at=8, minutes=0.1)


def _overfit(out: Path, **kw) -> TrainConfig:
    """4 fixed-binarized images, 2 steps per epoch, 8 epochs: the validation NLL is lowest at
    epoch 4 (393.0 nats) and 1-3 nats higher after it, as the network learns the 4 images."""
    settings = dict(limit_train=4, batch_size=2, hidden_sizes=[256], binarization="fixed")
    settings.update(num_masks=1, lr=1e-2, epochs=8, eval_n=100)
    return _cfg(out, **{**settings, **kw})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_best_epoch_is_shipped_and_survives_resume(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(_overfit(straight, ship=tmp_path / "straight.safetensors"))
    valid = [row["valid_nll"] for row in read_csv_log(straight / "eval.csv")]
    best_epoch = valid.index(min(valid)) + 1
    assert 1 < best_epoch < 8  # the test is not vacuous: later epochs are worse
    shipped = load_checkpoint(tmp_path / "straight.safetensors")
    assert shipped.metrics["best_epoch"] == best_epoch
    assert shipped.metrics["valid_nll_1mask"] == round(min(valid), 3)
    assert _same(shipped.state_dict, _weights(straight / "best.safetensors"))
    assert not _same(shipped.state_dict, _weights(straight / "last.safetensors"))
    # stopped after the best epoch, mid-epoch: the resumed part must not forget the best score
    train(_overfit(split, max_steps=2 * best_epoch + 3))
    train(_overfit(split, resume=True, ship=tmp_path / "split.safetensors"))
    assert_same_run(straight, split)
    assert _same(shipped.state_dict, _weights(tmp_path / "split.safetensors"))
    assert load_checkpoint(tmp_path / "split.safetensors").metrics["best_epoch"] == best_epoch
    # without validation there is no early stopping: the last weights are shipped
    train(_overfit(tmp_path / "none", eval_n=0, ship=tmp_path / "none.safetensors"))
    last = _weights(tmp_path / "none" / "last.safetensors")
    assert _same(last, _weights(tmp_path / "none.safetensors"))
    assert not (tmp_path / "none" / "best.safetensors").exists()


def test_the_shipped_command_and_checkpoint_fit_this_code():
    sidecar = read_sidecar(SHIPPED)
    argv = shlex.split(sidecar["command"])
    assert argv[:3] == ["python", "-m", "made.train"]
    cfg = parse_config(TrainConfig, argv[3:])
    model_config = {"num_inputs": 784, **{name: getattr(cfg, name) for name in MODEL_FLAGS}}
    assert model_config == sidecar["model"]
    assert set(asdict(cfg)) - set(MODEL_FLAGS) == set(sidecar["train"])
    model = load_model(SHIPPED, MADE)
    assert model.config() == sidecar["model"] and not model.training


def test_train_and_evaluate_commands(tmp_path, capsys):
    common = ["--limit-train", "100", "--batch-size", "50", "--hidden-sizes", "32"]
    common += ["--num-masks", "3", "--eval-n", "20", "--epochs", "1", "--quiet"]
    ship = tmp_path / "made.safetensors"
    a, b, c = (str(tmp_path / name) for name in "abc")
    assert train_main([*common, "--out", a, "--ship", str(ship)]) == 0
    ckpt = load_checkpoint(ship)
    assert ckpt.step == 2 and ckpt.model["num_masks"] == 3 and ckpt.train["batch_size"] == 50
    assert ckpt.command.startswith("python -m made.train") and "--num-masks 3" in ckpt.command
    assert train_main([*common, "--epochs", "2", "--out", b]) == 0
    for name in ("best.safetensors", "best.json"):  # a best epoch the saves of run a never saw
        shutil.copy(Path(b) / name, Path(a) / name)
    resume = ["--out", a, "--resume"]
    refused = [  # bad input: exit code 1 and one line that says what to do
        ("already holds a run", [*common, "--out", a]),
        ("nothing to resume", [*common, "--out", c, "--resume"]),
        ("hidden_sizes: saved [32], given [16]", [*common, "--hidden-sizes", "16", *resume]),
        ("holds step 4, but the run's best epoch ended at step 2", [*common, *resume]),
    ]
    for message, argv in refused:
        assert train_main(argv) == 1
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and message in err[0], err
    with pytest.raises(SystemExit):  # argparse: a choice that does not exist
        train_main([*common, "--binarization", "static"])
    argv = [str(ship), "--masks", "3", "--eval-n", "20"]
    assert evaluate_main(argv) == 0
    assert "1 mask(s): test NLL" in capsys.readouterr().out
    assert "test_nll_3masks_first20" not in load_checkpoint(ship).metrics  # no --write
    assert evaluate_main([*argv, "--write"]) == 0
    metrics = load_checkpoint(ship).metrics
    assert {"test_nll_1mask_first20", "test_nll_3masks_first20"} <= set(metrics)
    assert metrics["eval_3masks_first20"]["n_test"] == 20
    assert evaluate_main([str(ship), "--masks", "4"]) == 1
    assert evaluate_main([str(ship), "--eval-n", "0"]) == 1
    assert evaluate_main([str(tmp_path / "nope.safetensors")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "choose 1..3" in err[0] and "--eval-n" in err[1] and "does not exist" in err[2]
