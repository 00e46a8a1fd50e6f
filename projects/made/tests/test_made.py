"""Unit tests of MADE: the autoregressive property, exact normalisation, training, checkpoints, CLI."""

from __future__ import annotations

import itertools

import pytest
import torch
from made.evaluate import load_made
from made.evaluate import main as evaluate_main
from made.model import MADE, made_degrees, made_masks, mask_generator
from made.train import main as train_main
from torch.autograd.functional import jacobian

from shared_utils.checkpoints import load_checkpoint, save_checkpoint
from shared_utils.training import read_csv_log


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
    path = save_checkpoint(tmp_path / "m.safetensors", model, config=model.config(), step=3)
    assert not any("mask" in k or "ordering" in k for k in load_checkpoint(path).state_dict)
    restored = load_made(path)
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


def test_sampling_gives_binary_images_of_the_right_shape():
    model = MADE(12, [20], num_masks=3, order_agnostic=True)
    x = model.sample(4, generator=torch.Generator().manual_seed(0), mask=2)
    assert x.shape == (4, 12) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert model.mask_index == 0


def test_train_cli_runs_resumes_and_refuses_changed_options(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--limit-train", "200", "--limit-valid", "100", "--batch-size", "50"]
    base += ["--hidden-sizes", "32", "--num-masks", "3", "--log-every", "2", "--out", str(out)]
    assert train_main([*base, "--epochs", "1"]) == 0
    first = load_checkpoint(out / "last.safetensors", load_train_state=True)
    assert first.step == 4 and first.train_state["epoch"] == 1
    assert train_main([*base, "--epochs", "2", "--resume"]) == 0
    second = load_checkpoint(out / "last.safetensors", load_train_state=True)
    assert second.step == 8 and second.train_state["epoch"] == 2
    steps = [r["step"] for r in read_csv_log(out / "log.csv")]
    assert steps == sorted(steps) and steps[-1] == 8
    ship = tmp_path / "ship.safetensors"
    assert train_main([*base, "--epochs", "2", "--resume", "--ship", str(ship)]) == 0
    assert load_checkpoint(ship).config["num_masks"] == 3
    changed = [a if a != "32" else "16" for a in base]
    assert train_main([*changed, "--epochs", "2", "--resume"]) == 1
    assert "options differ" in capsys.readouterr().err
    assert train_main(["--resume", "--out", str(tmp_path / "missing")]) == 1
    assert evaluate_main([str(ship), "--masks", "3", "--limit", "20", "--no-write"]) == 0
    assert evaluate_main([str(ship), "--masks", "4", "--limit", "20"]) == 1
