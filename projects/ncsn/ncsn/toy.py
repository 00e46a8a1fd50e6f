"""The paper's 2-D motivating example: why plain Langevin dynamics loses the mixture weights and
annealed Langevin dynamics recovers them (Song & Ermon 2019, Sec. 3.2 and Fig. 3).

The data: p_data(x) = pi_1 N(x; mu_1, I) + pi_2 N(x; mu_2, I) with pi = (1/5, 4/5),
mu_1 = (-5, -5), mu_2 = (5, 5) (Sec. 3.2). Its perturbed versions are mixtures too:
q_sigma(x~) = sum_k pi_k N(x~; mu_k, (1 + sigma^2) I), so every score is known in closed form,

    grad log q_sigma(x) = sum_k r_k(x) (mu_k - x) / (1 + sigma^2),
    r_k(x) = pi_k N(x; mu_k, (1+sigma^2) I) / q_sigma(x)            (the responsibilities).

The score of a mixture in the region of one mode hardly depends on the weights (far from the
other mode r_k is 0 or 1), so Langevin dynamics started from broad noise sends each sample to the
nearest mode and in any reasonable number of steps never crosses the low-density gap between
them: the fraction of samples per mode reflects the initial distribution, not pi. Large sigma
fills the gap; annealing sigma down carries the right proportions to the data (Fig. 3).

``ToyScoreNet`` is a small noise conditional score network (an MLP with an embedding of the
noise level) trained here by denoising score matching (Eq. 6), to draw the learned score field
over the true one and to run the same samplers with learned scores. ``mode_fractions`` measures
the outcome: the fraction of samples nearer to each mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .score import annealed_langevin, dsm_loss_per_example, geometric_sigmas, langevin, perturb

WEIGHTS = (0.2, 0.8)  # pi_1, pi_2 (Sec. 3.2)
MEANS = ((-5.0, -5.0), (5.0, 5.0))  # mu_1, mu_2


@dataclass(frozen=True)
class ToySettings:
    """The samplers' settings (ours; the paper's Fig. 3 uses the same kind of schedule):
    plain Langevin with eps = 0.1 for T = 1000 steps; annealed Langevin with L = 10 levels from
    sigma_1 = 20 to sigma_L = 1, T = 100 steps per level, eps = 0.1; x_0 uniform on
    [-8, 8]^2."""

    eps_langevin: float = 0.1
    T_langevin: int = 1000
    sigma_1: float = 20.0
    sigma_L: float = 1.0
    L: int = 10
    eps: float = 0.1
    T: int = 100
    box: float = 8.0


def log_density(x: torch.Tensor, sigma: float = 0.0, weights=WEIGHTS, means=MEANS) -> torch.Tensor:
    """log q_sigma(x) of the mixture perturbed by N(0, sigma^2 I) (sigma = 0: p_data); x [B, 2]."""
    var = 1.0 + sigma**2
    mu = torch.tensor(means, dtype=x.dtype)  # [K, 2]
    log_pi = torch.log(torch.tensor(weights, dtype=x.dtype))
    d2 = (x[:, None, :] - mu[None]).pow(2).sum(-1)  # [B, K]
    return torch.logsumexp(log_pi - 0.5 * d2 / var - math.log(2 * math.pi * var), dim=-1)


def true_score(
    x: torch.Tensor, sigma: float | torch.Tensor = 0.0, weights=WEIGHTS, means=MEANS
) -> torch.Tensor:
    """grad_x log q_sigma(x) = sum_k r_k(x) (mu_k - x) / (1 + sigma^2), in closed form; sigma a
    number or a tensor [B] (one level per row)."""
    s2 = sigma**2 if not torch.is_tensor(sigma) else sigma.reshape(-1, 1) ** 2
    var = 1.0 + s2
    mu = torch.tensor(means, dtype=x.dtype)
    log_pi = torch.log(torch.tensor(weights, dtype=x.dtype))
    d2 = (x[:, None, :] - mu[None]).pow(2).sum(-1)
    r = torch.softmax(log_pi - 0.5 * d2 / var, dim=-1)  # [B, K]; the normaliser is shared
    return (r[:, :, None] * (mu[None] - x[:, None, :])).sum(1) / var


def sample_data(n: int, generator: torch.Generator | None = None, weights=WEIGHTS, means=MEANS):
    """n exact samples of p_data and their components."""
    k = torch.multinomial(torch.tensor(weights), n, replacement=True, generator=generator)
    return torch.tensor(means)[k] + torch.randn(n, 2, generator=generator), k


def mode_fractions(x: torch.Tensor, means=MEANS) -> list[float]:
    """Fraction of samples nearer to each mean (for MEANS: the sign of x_1 + x_2)."""
    mu = torch.tensor(means, dtype=x.dtype)
    nearest = (x[:, None, :] - mu[None]).pow(2).sum(-1).argmin(1)
    return [float((nearest == k).double().mean()) for k in range(len(means))]


class ToyScoreNet(nn.Module):
    """s_theta(x, sigma_i) = f_theta([x, e_i]) / sigma_i for 2-D x: an MLP whose input has a
    learned embedding e_i of the noise level appended (the same conditioning by level index as
    the image network, in the simplest form)."""

    def __init__(self, sigmas: torch.Tensor, hidden: int = 128, embed: int = 16):
        super().__init__()
        self.register_buffer("sigmas", sigmas.float(), persistent=False)
        self.embed = nn.Embedding(len(sigmas), embed)
        self.mlp = nn.Sequential(
            nn.Linear(2 + embed, hidden),
            nn.ELU(),
            nn.Linear(hidden, hidden),
            nn.ELU(),
            nn.Linear(hidden, 2),
        )

    def forward(self, x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        h = self.mlp(torch.cat([x / (1.0 + self.sigmas[i, None]), self.embed(i)], dim=1))
        return h / self.sigmas[i, None]


def train_toy(
    settings: ToySettings = ToySettings(),
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 3e-3,
    seed: int = 0,
) -> tuple[ToyScoreNet, list[float]]:
    """A ToyScoreNet trained by denoising score matching (Eq. 6, lambda = sigma^2) on fresh
    samples of p_data at every step; returns the network and its loss per step."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    sigmas = geometric_sigmas(settings.sigma_1, settings.sigma_L, settings.L)
    net = ToyScoreNet(sigmas)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        x, _ = sample_data(batch_size, gen)
        i = torch.randint(0, settings.L, (batch_size,), generator=gen)
        sigma = net.sigmas[i, None]
        x_tilde, _ = perturb(x, sigma, torch.randn(x.shape, generator=gen))
        loss = dsm_loss_per_example(net(x_tilde, i), x_tilde, x, sigma).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return net.eval(), losses


def run_samplers(
    n: int = 1280,
    settings: ToySettings = ToySettings(),
    net: ToyScoreNet | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """n samples each of: p_data exactly; Langevin dynamics (Eq. 4) with the exact score of
    p_data; annealed Langevin dynamics (Algorithm 1) with the exact scores of q_sigma_i; and,
    with a trained ``net``, the same two samplers with its scores (Langevin with
    s_theta(x, sigma_L)). Each from x_0 ~ Uniform[-box, box]^2, seeded."""
    gen = torch.Generator().manual_seed(seed)
    sigmas = geometric_sigmas(settings.sigma_1, settings.sigma_L, settings.L)
    out: dict[str, torch.Tensor] = {"exact": sample_data(n, gen)[0]}

    def x0() -> torch.Tensor:
        return (torch.rand(n, 2, generator=gen) * 2 - 1) * settings.box

    s = settings
    out["langevin_exact"] = langevin(true_score, x0(), s.eps_langevin, s.T_langevin, gen)

    def exact(x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return true_score(x, sigmas[i].to(x.dtype))

    out["annealed_exact"] = annealed_langevin(exact, x0(), sigmas, s.eps, s.T, gen)
    if net is not None:
        with torch.no_grad():
            last = torch.full((n,), s.L - 1, dtype=torch.long)
            out["langevin_learned"] = langevin(
                lambda x: net(x, last), x0(), s.eps_langevin, s.T_langevin, gen
            )
            out["annealed_learned"] = annealed_langevin(net, x0(), sigmas, s.eps, s.T, gen)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m ncsn.toy``: train the toy network, run the samplers, print the fraction of
    samples per mode (and with ``--write`` store them in results/toy.json)."""
    import argparse
    import json
    import shlex
    import sys
    import time
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m ncsn.toy", description=main.__doc__)
    parser.add_argument("--n", type=int, default=1280, help="samples per sampler")
    parser.add_argument("--steps", type=int, default=2000, help="DSM training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="write results/toy.json")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.process_time()
    net, losses = train_toy(steps=args.steps, seed=args.seed)
    out = run_samplers(n=args.n, net=net, seed=args.seed)
    fractions = {k: mode_fractions(v) for k, v in out.items()}
    print(
        f"true weights {WEIGHTS}; {args.n} samples each (standard error of a fraction ~"
        f"{math.sqrt(WEIGHTS[0] * WEIGHTS[1] / args.n):.3f})"
    )
    for name, f in fractions.items():
        print(f"{name:18s} near {MEANS[0]}: {f[0]:.3f}   near {MEANS[1]}: {f[1]:.3f}")
    print(f"{time.process_time() - start:.0f} CPU-s")
    if args.write:
        path = Path(__file__).resolve().parent.parent / "results" / "toy.json"
        path.parent.mkdir(exist_ok=True)
        report = {
            "command": shlex.join(["python", "-m", "ncsn.toy", *argv]),
            "weights": list(WEIGHTS),
            "means": [list(m) for m in MEANS],
            "settings": ToySettings().__dict__,
            "n": args.n,
            "train_steps": args.steps,
            "final_loss_mean_last_100": sum(losses[-100:]) / len(losses[-100:]),
            "fractions": fractions,
        }
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
