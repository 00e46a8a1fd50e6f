"""The noise schedule and the Gaussian formulas of the forward process, apart from any network.

Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020 (equation numbers
below are theirs unless marked "Song"); Song, Meng & Ermon, "Denoising Diffusion Implicit
Models", ICLR 2021.

As in diffusers, the schedule is one object and the network another: everything here is a closed
form in beta_1..beta_T, and the samplers (samplers.py) and the bound (vlb.py) combine it with any
function eps_theta(x_t, t).

Notation. Time runs t = 1..T. Arrays are indexed by t with an entry for t = 0 in front, so that
``alpha_bar[t - 1]`` exists for t = 1:

    beta_t                                   the forward process variances (Sec. 2)
    alpha_t = 1 - beta_t,  alpha_bar_t = prod_{s<=t} alpha_s,  alpha_bar_0 = 1   (Sec. 2, before Eq. 4)
    beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) * beta_t             (Eq. 7)

Song et al. write alpha_t for DDPM's alpha_bar_t; the code keeps DDPM's names throughout and
states the DDIM formulas in them.

The schedule is kept in float64 and each value is cast to the dtype of the tensor it multiplies:
1 - alpha_bar_t and beta_tilde_t span five orders of magnitude.
"""

from __future__ import annotations

import torch


class NoiseSchedule:
    """beta_1..beta_T and the closed forms of q built on them."""

    def __init__(self, betas: torch.Tensor):
        betas = torch.as_tensor(betas, dtype=torch.float64, device="cpu").flatten()
        if betas.numel() < 1 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("every beta_t of a noise schedule must lie in (0, 1)")
        self.T = int(betas.numel())
        zero = torch.zeros(1, dtype=torch.float64, device="cpu")
        self.beta = torch.cat([zero, betas])  # beta[0] = 0 is never used as a variance
        self.alpha = 1.0 - self.beta
        self.alpha_bar = torch.cumprod(self.alpha, 0)  # alpha_bar[0] = 1
        # Eq. 7; beta_tilde[1] = 0: x_0 is known given x_1 and x_0.
        self.beta_tilde = torch.cat(
            [zero, (1.0 - self.alpha_bar[:-1]) / (1.0 - self.alpha_bar[1:]) * betas]
        )

    @classmethod
    def linear(cls, T: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02) -> NoiseSchedule:
        """Ho et al., Sec. 4: "forward process variances ... increasing linearly from
        beta_1 = 10^-4 to beta_T = 0.02", T = 1000."""
        if T < 1:
            raise ValueError(f"T must be a positive number of steps, not {T}")
        return cls(torch.linspace(beta_1, beta_T, T, dtype=torch.float64, device="cpu"))

    # -- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def at(values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """``values[t]`` shaped to broadcast over a batch like ``like`` ([B, ...]), in its
        dtype and on its device; ``t`` is an int or a tensor of B time steps."""
        index = torch.as_tensor(t, dtype=torch.long).reshape(-1).cpu()
        out = values[index].to(device=like.device, dtype=like.dtype)
        return out.reshape(-1, *([1] * (like.dim() - 1)))

    def timesteps(self, steps: int) -> list[int]:
        """The increasing sub-sequence tau_1 < ... < tau_S of {1..T} that a sampler with S =
        ``steps`` steps visits: tau_i = floor((i - 1) T / S) + 1, Song et al.'s "linear"
        selection (Sec. 4.2, App. D.2: tau_i = floor(c i) in 0-based time). S = T gives every
        step; tau_1 = 1 always, so the last step of a sampler lands on x_0."""
        if not 1 <= steps <= self.T:
            raise ValueError(f"the number of sampling steps must be in 1..{self.T}, not {steps}")
        return [(i * self.T) // steps + 1 for i in range(steps)]

    # -- the forward process q ---------------------------------------------------------------------

    def q_step(self, x_prev: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor):
        """x_t ~ q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)   (Eq. 2)."""
        beta = self.at(self.beta, t, x_prev)
        return (1.0 - beta).sqrt() * x_prev + beta.sqrt() * noise

    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor | int):
        """Mean and variance of q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
        (Eq. 4)."""
        alpha_bar = self.at(self.alpha_bar, t, x0)
        return alpha_bar.sqrt() * x0, (1.0 - alpha_bar).expand_as(x0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor):
        """x_t(x_0, eps) = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, eps ~ N(0, I): a
        sample of Eq. 4, reparametrised as in Eq. 9 and Eq. 14."""
        alpha_bar = self.at(self.alpha_bar, t, x0)
        return alpha_bar.sqrt() * x0 + (1.0 - alpha_bar).sqrt() * eps

    def posterior(
        self,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor | int,
        s: torch.Tensor | int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean mu_tilde and variance beta_tilde of the forward process posterior
        q(x_s | x_t, x_0), s < t (s = t - 1 when not given):

            q(x_{t-1} | x_t, x_0) = N(mu_tilde_t(x_t, x_0), beta_tilde_t I)              (Eq. 6)
            mu_tilde_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
                         + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t    (Eq. 7)

        For a skipped sub-sequence (s < t - 1) the same formulas hold for the two-step chain
        x_s -> x_t, whose single step has beta_{t|s} = 1 - alpha_bar_t / alpha_bar_s in place
        of beta_t and alpha_bar_t / alpha_bar_s in place of alpha_t (this is the DDPM sampler on a
        sub-sequence of Song et al., Sec. 4.2)."""
        s = (torch.as_tensor(t) - 1) if s is None else s
        ab_t, ab_s = self.at(self.alpha_bar, t, x_t), self.at(self.alpha_bar, s, x_t)
        beta_ts = 1.0 - ab_t / ab_s
        mean = (ab_s.sqrt() * beta_ts / (1.0 - ab_t)) * x0 + (
            (ab_t / ab_s).sqrt() * (1.0 - ab_s) / (1.0 - ab_t)
        ) * x_t
        variance = (1.0 - ab_s) / (1.0 - ab_t) * beta_ts
        return mean, variance.expand_as(x_t)

    # -- the reverse process in the eps-parametrisation -------------------------------------------

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor):
        """x_0 implied by x_t and a noise prediction: Eq. 4's reparametrisation solved for x_0,
        x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) (Eq. 15; Song Eq. 9)."""
        alpha_bar = self.at(self.alpha_bar, t, x_t)
        return (x_t - (1.0 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()

    def mean_from_eps(self, x_t: torch.Tensor, t: torch.Tensor | int, eps: torch.Tensor):
        """mu_theta(x_t, t) = 1 / sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps)
        (Eq. 11): Eq. 7 with x_0 from :meth:`predict_x0`."""
        alpha, beta = self.at(self.alpha, t, x_t), self.at(self.beta, t, x_t)
        alpha_bar = self.at(self.alpha_bar, t, x_t)
        return (x_t - beta / (1.0 - alpha_bar).sqrt() * eps) / alpha.sqrt()

    def reverse_variance(self, t: torch.Tensor | int, like: torch.Tensor, kind: str):
        """sigma_t^2 of p_theta(x_{t-1} | x_t) = N(mu_theta, sigma_t^2 I) (Eq. 1 with Sec. 3.2):
        ``"beta"`` gives sigma_t^2 = beta_t (optimal for x_0 ~ N(0, I)), ``"beta_tilde"``
        sigma_t^2 = beta_tilde_t (optimal for x_0 deterministically one point); "both had
        similar results" for samples (Sec. 3.2)."""
        if kind == "beta":
            return self.at(self.beta, t, like).expand_as(like)
        if kind == "beta_tilde":
            return self.at(self.beta_tilde, t, like).expand_as(like)
        raise ValueError(f"the reverse variance is 'beta' or 'beta_tilde', not {kind!r}")

    def ddim_sigma(
        self, t: torch.Tensor | int, s: torch.Tensor | int, eta: float, like: torch.Tensor
    ):
        """sigma_t(eta) of a DDIM step from t to s < t (Song Eq. 16, in DDPM's notation):

            sigma = eta * sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) * sqrt(1 - alpha_bar_t / alpha_bar_s)

        eta = 0: the deterministic DDIM; eta = 1: the DDPM posterior variance beta_tilde of the
        step (Eq. 7 for s = t - 1)."""
        ab_t, ab_s = self.at(self.alpha_bar, t, like), self.at(self.alpha_bar, s, like)
        return eta * ((1.0 - ab_s) / (1.0 - ab_t) * (1.0 - ab_t / ab_s)).sqrt()

    def snr(self, t: torch.Tensor | int) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t) of q(x_t | x_0) (float64)."""
        alpha_bar = self.alpha_bar[torch.as_tensor(t, dtype=torch.long).cpu()]
        return alpha_bar / (1.0 - alpha_bar)
