"""Causality, exact likelihood, conditioning and sampling of PixelCNN / Gated PixelCNN."""

from __future__ import annotations

import pytest
import torch
from pixelcnn.autoregressive import marginal_nll_per_image, nll_per_image, sample
from pixelcnn.model import GatedPixelCNN, PixelCNN, build_model, causal_mask

SIDE = 8
torch.set_num_threads(1)


def input_gradients(model: torch.nn.Module, y: torch.Tensor | None = None) -> torch.Tensor:
    """``[S*S, S*S]`` matrix G with G[o, p] = sum over a batch of |d logit_o / d x_p|."""
    torch.manual_seed(0)
    batch = 4 if y is None else len(y)
    x = torch.rand(batch, 1, SIDE, SIDE, dtype=torch.float64, requires_grad=True)
    out = model(x, y)
    # one vector-Jacobian product per output pixel o, batched: grad_outputs[o] is one-hot at o
    eye = torch.eye(SIDE * SIDE, dtype=torch.float64).view(-1, 1, 1, SIDE, SIDE)
    (g,) = torch.autograd.grad(out, x, eye.expand(-1, batch, -1, -1, -1), is_grads_batched=True)
    return g.abs().sum(1).flatten(1)


def random_net(kind: str, n_layers: int, n_classes: int = 0) -> torch.nn.Module:
    torch.manual_seed(1)
    if kind == "pixelcnn":
        net = PixelCNN(channels=8, n_layers=n_layers)
    else:
        net = GatedPixelCNN(channels=8, n_layers=n_layers, n_classes=n_classes)
    return net.double()


def test_masks_a_and_b():
    a, b = causal_mask(3, "A"), causal_mask(3, "B")
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    with pytest.raises(ValueError):
        causal_mask(3, "C")


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
def test_output_depends_only_on_earlier_pixels(kind):
    g = input_gradients(random_net(kind, n_layers=3))
    future_or_self = torch.triu(torch.ones(SIDE * SIDE, SIDE * SIDE, dtype=torch.bool))
    assert (g[future_or_self] == 0).all(), "a logit sees its own pixel or a later one"
    assert (g[~future_or_self] > 0).any()


def test_conditional_gated_is_causal_too():
    y = torch.tensor([3, 1, 4, 1])
    g = input_gradients(random_net("gated", n_layers=3, n_classes=10), y)
    assert (g[torch.triu(torch.ones_like(g, dtype=torch.bool))] == 0).all()


def test_gated_has_no_blind_spot_but_plain_has():
    """With 5 layers (7x7 first, then 3x3) on an 8x8 image the gated net sees every earlier pixel;
    the plain PixelCNN of the same depth misses some earlier pixels (the blind spot)."""
    past = torch.tril(torch.ones(SIDE * SIDE, SIDE * SIDE, dtype=torch.bool), diagonal=-1)
    g_gated = input_gradients(random_net("gated", n_layers=5))
    assert (g_gated[past] > 0).all(), "the gated PixelCNN should see every earlier pixel"
    g_plain = input_gradients(random_net("pixelcnn", n_layers=5))
    blind = past & (g_plain == 0)
    assert blind.any(), "the plain PixelCNN should have a blind spot"
    # the blind spot lies above-right of the pixel: e.g. bottom-left output misses a pixel up-right
    o = (SIDE - 1) * SIDE + 0
    missed = blind[o].nonzero().flatten()
    assert any((p // SIDE) < SIDE - 1 and (p % SIDE) > 0 for p in missed.tolist())


@pytest.mark.parametrize("kind", ["pixelcnn", "gated", "gated-cond"])
def test_exact_nll_matches_pixel_by_pixel_loop(kind):
    """Eq. 1 from one forward pass equals the sum of conditionals read one pixel at a time, where
    every pixel from i on is replaced by noise before reading p(x_i | x_<i)."""
    n_classes = 10 if kind == "gated-cond" else 0
    net = random_net("pixelcnn" if kind == "pixelcnn" else "gated", 4, n_classes)
    side = 6
    gen = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((3, 1, side, side), 0.4, dtype=torch.float64), generator=gen)
    y = torch.tensor([0, 5, 9]) if n_classes else None
    fast = nll_per_image(net, x, y)
    slow = torch.zeros(3, dtype=torch.float64)
    for i in range(side * side):
        r, c = divmod(i, side)
        probe = x.clone().flatten(1)
        probe[:, i:] = torch.rand(3, side * side - i, dtype=torch.float64, generator=gen)
        logit = net(probe.view_as(x), y)[:, 0, r, c]
        p1 = torch.sigmoid(logit)
        xi = x[:, 0, r, c]
        slow -= torch.log(torch.where(xi == 1, p1, 1 - p1))
    torch.testing.assert_close(fast, slow)


def test_conditioning_changes_the_output():
    net = random_net("gated", 3, n_classes=10)
    x = torch.zeros(2, 1, SIDE, SIDE, dtype=torch.float64)
    a = net(x, torch.tensor([0, 0]))
    b = net(x, torch.tensor([7, 7]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError):
        net(x)
    with pytest.raises(ValueError):
        random_net("pixelcnn", 2)(x, torch.tensor([0, 0]))


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
def test_loss_decreases_on_a_small_batch(kind):
    torch.manual_seed(0)
    net = build_model(kind=kind, channels=16, n_layers=2)
    stripes = (torch.arange(10) % 2).float().view(1, 1, 10, 1).expand(8, 1, 10, 10)
    x = stripes.clone()  # a predictable pattern: the model can drive the NLL far down
    x[4:] = 1 - x[4:]
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = nll_per_image(net, x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_sampling_shape_binary_and_seeded():
    net = random_net("gated", 2, n_classes=10).float()
    y = torch.arange(3)
    s1 = sample(net, 3, y, shape=(5, 6), generator=torch.Generator().manual_seed(0))
    s2 = sample(net, 3, y, shape=(5, 6), generator=torch.Generator().manual_seed(0))
    assert s1.shape == (3, 1, 5, 6)
    assert set(s1.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(s1, s2)


def test_build_model_takes_the_sidecar_arguments():
    for kind, n_classes in (("pixelcnn", 0), ("gated", 0), ("gated", 10)):
        config = dict(
            kind=kind, channels=8, n_layers=2, first_kernel=5, kernel_size=3, n_classes=n_classes
        )
        net = build_model(**config)
        assert net.config() == config
        assert isinstance(net, PixelCNN if kind == "pixelcnn" else GatedPixelCNN)
        assert net.n_classes == n_classes
    with pytest.raises(ValueError, match="class-conditional"):
        build_model(kind="pixelcnn", channels=8, n_layers=1, n_classes=10)
    with pytest.raises(ValueError, match="unknown kind"):
        build_model(kind="pixelrnn", channels=8, n_layers=1)
    with pytest.raises(ValueError, match="odd"):
        build_model(kind="gated", kernel_size=4)
    with pytest.raises(ValueError, match="n_layers"):
        build_model(kind="gated", n_layers=0)
    with pytest.raises(TypeError):
        build_model(kind="gated", layers=3)  # an unknown argument (an old sidecar's name)


@pytest.mark.parametrize("kind", ["pixelcnn", "gated"])
def test_cropped_sampling_equals_full_sampling(kind):
    """Running the network only on the rows within reach gives exactly the same samples."""
    net = random_net(kind, 2).float()
    assert net.receptive_rows < 12
    full = sample(net, 2, shape=(12, 5), generator=torch.Generator().manual_seed(3), crop=False)
    fast = sample(net, 2, shape=(12, 5), generator=torch.Generator().manual_seed(3), crop=True)
    assert torch.equal(full, fast)
    # and the logits of the last row do not change when rows beyond the reach are altered
    x = torch.bernoulli(torch.full((2, 1, 12, 5), 0.5))
    top = 11 - net.receptive_rows
    x2 = x.clone()
    x2[:, :, :top] = 1 - x2[:, :, :top]
    torch.testing.assert_close(net(x)[:, :, -1], net(x2)[:, :, -1])
    x3 = x.clone()  # the reach is tight: the farthest row within it does matter
    x3[:, :, top] = 1 - x3[:, :, top]
    assert not torch.allclose(net(x)[:, :, -1], net(x3)[:, :, -1])


def test_marginal_nll_sums_the_label_out():
    net = random_net("gated", 2, n_classes=10)
    x = torch.bernoulli(torch.full((3, 1, 6, 6), 0.5, dtype=torch.float64))
    per_label = torch.stack([nll_per_image(net, x, torch.full((3,), k)) for k in range(10)])
    brute = -torch.log(torch.exp(-per_label).mean(0))
    marginal = marginal_nll_per_image(net, x)
    torch.testing.assert_close(marginal, brute)
    assert (marginal >= per_label.min(0).values).all()
    assert (marginal <= per_label.min(0).values + torch.log(torch.tensor(10.0))).all()
