"""The cached sampler draws exactly what the reference sampler draws, with the same logits."""

from __future__ import annotations

import pytest
import torch
from pixelcnn.autoregressive import sample
from pixelcnn.fast_sampling import fast_sample
from pixelcnn.model import build_model

torch.set_num_threads(1)
CASES = {  # small random-weight models; kernels 5 and 3 so that windows cross every border
    "pixelcnn": dict(kind="pixelcnn", channels=6, n_layers=3, first_kernel=5),
    "gated": dict(kind="gated", channels=6, n_layers=3, first_kernel=5),
    "gated-cond": dict(kind="gated", channels=6, n_layers=3, first_kernel=5, n_classes=10),
    "gated-7x7": dict(kind="gated", channels=4, n_layers=2, first_kernel=7, kernel_size=5),
}


def random_net(case: str) -> torch.nn.Module:
    torch.manual_seed(2)
    net = build_model(**CASES[case]).double()
    with torch.no_grad():  # larger biases than at initialisation: samples that are not all alike
        for module in net.modules():
            if getattr(module, "bias", None) is not None:
                module.bias.normal_(0.0, 0.5)
    return net


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_sampler_draws_the_reference_samples(case, seed):
    net = random_net(case)
    n, shape = 5, (9, 7)
    y = torch.tensor([0, 3, 9, 3, 7]) if net.n_classes else None
    reference = sample(net, n, y, shape, torch.Generator().manual_seed(seed), crop=False)
    fast, logits = fast_sample(
        net, n, y, shape, torch.Generator().manual_seed(seed), return_logits=True
    )
    assert torch.equal(fast, reference)
    assert 0.1 < reference.mean() < 0.9  # a test that could fail: the samples vary
    assert len({tuple(s.flatten().tolist()) for s in reference}) == n
    # the logits used for each pixel are the full network's on the finished samples (Eq. 1)
    torch.testing.assert_close(logits, net(fast, y), rtol=0, atol=1e-12)


def test_fast_sampler_in_float32_matches_closely():
    net = random_net("gated-cond").float()
    y = torch.arange(4)
    x, logits = fast_sample(net, 4, y, (8, 8), torch.Generator().manual_seed(0), return_logits=True)
    assert x.dtype == torch.float32 and set(x.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(logits, net(x, y), rtol=1e-4, atol=1e-5)


def test_fast_sampler_refuses_wrong_labels():
    with pytest.raises(ValueError):
        fast_sample(random_net("gated-cond"), 2, None, (4, 4))
    with pytest.raises(ValueError):
        fast_sample(random_net("gated"), 2, torch.tensor([1, 2]), (4, 4))
    with pytest.raises(ValueError):
        fast_sample(random_net("pixelcnn"), 2, torch.tensor([1, 2]), (4, 4))
