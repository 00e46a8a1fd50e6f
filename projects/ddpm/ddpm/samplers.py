"""Samplers of the reverse process for any noise predictor eps_theta(x_t, t).

* :func:`ancestral` is DDPM's Algorithm 2 (Ho et al. 2020): x_T ~ N(0, I), then
  x_{t-1} = mu_theta(x_t, t) + sigma_t z with mu_theta of Eq. 11 and sigma_t^2 = beta_t or
  beta_tilde_t (Sec. 3.2). With fewer steps than T it runs on a sub-sequence tau of {1..T}
  (Song et al. Sec. 4.2): each step is the posterior of the two-step chain x_s -> x_t
  (schedule.NoiseSchedule.posterior), and "beta" becomes 1 - alpha_bar_t / alpha_bar_s, the
  "sigma hat" of Song et al. Sec. 5.1.
* :func:`ddim` is Song et al.'s generalised step (Eq. 12) with sigma_t(eta) of Eq. 16: eta = 0 is
  the deterministic DDIM, eta = 1 has the variance of DDPM's posterior.
* :func:`ddim_invert` runs the deterministic DDIM step backwards (encoding, Song Sec. 5.4), and
  :func:`slerp` interpolates between two encoded x_T (Song Sec. 5.3).
* :func:`guided` combines conditional and unconditional predictions for classifier-free guidance
  (Ho & Salimans 2022, Eq. 6).

Every random number is drawn from the ``generator`` passed in (on its device), so a sampler is
deterministic under a seed. ``eps_fn(x_t, t)`` receives a batch and an int64 tensor of time steps.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ddpm.schedule import NoiseSchedule

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(
        like.device
    )


def _steps(x: torch.Tensor, t: int) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


def _x0(schedule: NoiseSchedule, x: torch.Tensor, t: int, eps: torch.Tensor, clip_x0: bool):
    x0 = schedule.predict_x0(x, t, eps)  # Eq. 15
    return x0.clamp(-1.0, 1.0) if clip_x0 else x0


def prior_sample(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """x_T ~ p(x_T) = N(0, I) (Ho et al. Sec. 2)."""
    device = torch.device(device)
    return _noise(torch.empty(shape, device=device), generator)


@torch.no_grad()
def ancestral(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    generator: torch.Generator | None = None,
    steps: int | None = None,
    variance: str = "beta",
    clip_x0: bool = False,
    chain: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """DDPM's Algorithm 2 from ``x_T``: for t = T..1, z ~ N(0, I) if t > 1 else 0,
    x_{t-1} = 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) + sigma_t z.

    Written as mu_tilde_t(x_0_hat, x_t) (Eq. 7) of x_0_hat = Eq. 15, which is Eq. 11 (and lets the
    same code take a sub-sequence of ``steps`` < T steps, and ``clip_x0`` clamp x_0_hat to
    [-1, 1] as the authors' code does). ``variance``: sigma_t^2 = beta_t ("beta") or
    beta_tilde_t ("beta_tilde"). ``chain`` (a list) receives x_t after every step."""
    taus = schedule.timesteps(steps or schedule.T)
    x = x_T
    for i in reversed(range(len(taus))):
        t, s = taus[i], (taus[i - 1] if i > 0 else 0)
        eps = eps_fn(x, _steps(x, t))
        mean, beta_tilde = schedule.posterior(_x0(schedule, x, t, eps, clip_x0), x, t, s)
        if s > 0:
            if variance == "beta":  # beta_t, or 1 - alpha_bar_t / alpha_bar_s on a sub-sequence
                ab_t = schedule.at(schedule.alpha_bar, t, x)
                var = (1.0 - ab_t / schedule.at(schedule.alpha_bar, s, x)).expand_as(x)
            elif variance == "beta_tilde":
                var = beta_tilde
            else:
                raise ValueError(f"variance is 'beta' or 'beta_tilde', not {variance!r}")
            x = mean + var.sqrt() * _noise(x, generator)
        else:
            x = mean  # the last step (t = 1 when every step is taken) adds no noise
        if chain is not None:
            chain.append(x)
    return x


def ddim_step(
    schedule: NoiseSchedule,
    x: torch.Tensor,
    eps: torch.Tensor,
    t: int,
    s: int,
    eta: float,
    generator: torch.Generator | None = None,
    clip_x0: bool = False,
) -> torch.Tensor:
    """One generalised step from x_t to x_s, s < t (Song Eq. 12 in DDPM's notation):

    x_s = sqrt(alpha_bar_s) x_0_hat + sqrt(1 - alpha_bar_s - sigma^2) eps_theta(x_t, t) + sigma z,
    x_0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_bar_t), sigma = sigma_t(eta)
    of Eq. 16; s = 0 means x_0 (alpha_bar_0 = 1, sigma = 0)."""
    ab_s = schedule.at(schedule.alpha_bar, s, x)
    sigma = schedule.ddim_sigma(t, s, eta, x)
    direction = (1.0 - ab_s - sigma**2).clamp(min=0.0).sqrt() * eps  # "direction pointing to x_t"
    x_next = ab_s.sqrt() * _x0(schedule, x, t, eps, clip_x0) + direction
    if eta > 0 and s > 0:
        x_next = x_next + sigma * _noise(x, generator)
    return x_next


@torch.no_grad()
def ddim(
    eps_fn: EpsFn,
    schedule: NoiseSchedule,
    x_T: torch.Tensor,
    generator: torch.Generator | None = None,
    steps: int = 50,
    eta: float = 0.0,
    clip_x0: bool = False,
    chain: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """DDIM sampling (Song et al. Sec. 4) from ``x_T`` on the sub-sequence of ``steps`` steps:
    :func:`ddim_step` from tau_S down to 0. ``eta = 0``: deterministic given x_T (an implicit
    model); ``eta = 1``: DDPM's posterior variance at every step."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, not {eta}")
    taus = schedule.timesteps(steps)
    x = x_T
    for i in reversed(range(len(taus))):
        t, s = taus[i], (taus[i - 1] if i > 0 else 0)
        x = ddim_step(schedule, x, eps_fn(x, _steps(x, t)), t, s, eta, generator, clip_x0)
        if chain is not None:
            chain.append(x)
    return x


@torch.no_grad()
def ddim_invert(
    eps_fn: EpsFn, schedule: NoiseSchedule, x0: torch.Tensor, steps: int = 50
) -> torch.Tensor:
    """Encode x_0 into x_T with the deterministic DDIM run backwards (Song Sec. 4.3 and 5.4: the
    Euler steps of the ODE of Eq. 14 taken from t = 0 to T).

    The step from s to t (s < t on the sub-sequence) is the eta = 0 step of :func:`ddim_step`
    with the roles of s and t exchanged; it needs eps_theta(x_t, t), which is unknown before x_t
    is, and uses eps_theta(x_s, t) in its place: the same network time as the decoding step that
    will undo it, so that encoding and decoding are exact inverses whenever eps_theta does not
    depend on x."""
    taus = schedule.timesteps(steps)
    x = x0
    for i, t in enumerate(taus):
        s = taus[i - 1] if i > 0 else 0
        eps = eps_fn(x, _steps(x, t))
        ab_s, ab_t = schedule.at(schedule.alpha_bar, s, x), schedule.at(schedule.alpha_bar, t, x)
        x0_hat = (x - (1.0 - ab_s).sqrt() * eps) / ab_s.sqrt()
        x = ab_t.sqrt() * x0_hat + (1.0 - ab_t).sqrt() * eps
    return x


def slerp(x0: torch.Tensor, x1: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation between two latents (Song Sec. 5.3, after White 2016):
    sin((1 - a) theta) / sin(theta) x0 + sin(a theta) / sin(theta) x1, theta the angle between
    them; Gaussian x_T keep their norm along the path, which a straight line would shrink."""
    a, b = x0.flatten(1), x1.flatten(1)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    theta = torch.arccos(cos.clamp(-1.0, 1.0)).reshape(-1, *([1] * (x0.dim() - 1)))
    alpha = torch.as_tensor(alpha, dtype=x0.dtype, device=x0.device)
    return (torch.sin((1 - alpha) * theta) * x0 + torch.sin(alpha * theta) * x1) / torch.sin(theta)


def guided(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6):
    eps_tilde = (1 + w) eps_theta(z, c) - w eps_theta(z), so w = 0 is the conditional model,
    w = -1 the unconditional one, and w > 0 pushes away from the unconditional prediction."""
    return (1.0 + w) * eps_cond - w * eps_uncond
