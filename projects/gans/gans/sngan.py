"""SNGAN: spectral normalisation of the discriminator and the hinge loss (Miyato et al., ICLR 2018).

Spectral normalisation (Sec. 2.1) makes every layer of D 1-Lipschitz by dividing its weight matrix
by its largest singular value,

    sigma(W) = max_{h != 0} ||W h||_2 / ||h||_2,        W_SN(W) = W / sigma(W)           (Eq. 8)

so that ||D||_Lip <= prod_l sigma(W_l / sigma(W_l)) = 1 for 1-Lipschitz activations. A
convolution's kernel [out, in, k, k] is treated as the matrix [out, in * k * k], as in the paper's
code: a cheap stand-in for the operator norm of the convolution itself.

sigma(W) is estimated by power iteration with a vector u that persists across updates
(Sec. 2.2, Appendix A, Algorithm 1): at every forward pass in training mode, one step

    v <- W^T u / ||W^T u||_2,        u <- W v / ||W v||_2,        sigma(W) ~ u^T W v

and, since W changes little between updates, one step per update is enough for u to track the top
singular vector. u and v are buffers, so they are in the state_dict: a resumed run continues with
the same estimate (exact resume) and a loaded discriminator gives the same outputs. The gradient
flows through W only (u and v are constants of the step, as in the paper's derivation).

Loss: the hinge version of the adversarial loss (Miyato et al. Eq. 16-17; Lim & Ye 2017), which the
paper found to work best with spectral normalisation:

    V_D = E_x[min(0, -1 + D(x))] + E_z[min(0, -1 - D(G(z)))]        (maximised by D; Eq. 16)
    V_G = -E_z[D(G(z))]                                              (minimised by G; Eq. 17)

Hyperparameters: Miyato et al. compare the methods under six Adam settings A-F (Table 1); we take
setting C, the setting of Radford et al.'s DCGAN (alpha = 2e-4, beta1 = 0.5, beta2 = 0.999,
n_dis = 1), which is also the cheapest per generator update on a CPU. The other settings are
flags away (``--lr``, ``--beta1``, ``--beta2``, ``--n-critic``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ADAM = {"lr": 2e-4, "betas": (0.5, 0.999)}  # Miyato et al. Table 1, setting C
N_DIS = 1  # discriminator updates per generator update (setting C)


class SpectralNorm(nn.Module):
    """``module`` (a Conv2d or a Linear) with its weight replaced by W / sigma(W) (Eq. 8).

    The unnormalised weight W stays ``module.weight`` (what the optimizer updates); ``u`` [out]
    and ``v`` [in * k * k] are the power iteration's vectors (Algorithm 1), updated by one step
    (``n_power_iterations``) at every forward pass in training mode and frozen in eval mode.
    """

    def __init__(self, module: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12):
        super().__init__()
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            raise TypeError(f"SpectralNorm wraps a Conv2d or a Linear, not {type(module).__name__}")
        if n_power_iterations < 1:
            raise ValueError("n_power_iterations must be at least 1")
        self.module = module
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        W = self.weight_matrix()
        u = F.normalize(torch.randn(W.shape[0], device=W.device), dim=0, eps=eps)  # random u_0
        self.register_buffer("u", u)
        self.register_buffer("v", torch.empty(W.shape[1], device=W.device))
        self.sync_v()

    @torch.no_grad()
    def sync_v(self) -> None:
        """v <- W^T u / ||W^T u|| for the current W and u (the first half of Algorithm 1's step):
        call it after setting W from outside (e.g. initialising it), so that an eval-mode forward
        before any training one uses a v that belongs to W."""
        self.v.copy_(F.normalize(self.weight_matrix().t() @ self.u, dim=0, eps=self.eps))

    def weight_matrix(self) -> torch.Tensor:
        """W as a matrix: [out, in] for a Linear, [out, in * k * k] for a convolution."""
        W = self.module.weight
        return W.reshape(W.shape[0], -1)

    @torch.compiler.disable  # run eagerly: inductor would alias the returned u to the buffer
    @torch.no_grad()
    def power_iteration(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` steps of Algorithm 1 on the current W; stores u and v in the buffers and returns
        them as new tensors (a later forward pass may overwrite the buffers while the autograd
        graph of this one still needs its u and v)."""
        W = self.weight_matrix()
        u = self.u
        for _ in range(n):
            v = F.normalize(W.t() @ u, dim=0, eps=self.eps)  # v <- W^T u / ||W^T u||
            u = F.normalize(W @ v, dim=0, eps=self.eps)  # u <- W v / ||W v||
        self.u.copy_(u)
        self.v.copy_(v)
        return u, v

    def sigma(self, u: torch.Tensor | None = None, v: torch.Tensor | None = None) -> torch.Tensor:
        """The estimate u^T W v of sigma(W) (Algorithm 1), differentiable in W only; by default
        with the stored u and v."""
        u = self.u.clone() if u is None else u
        v = self.v.clone() if v is None else v
        return torch.dot(u, self.weight_matrix() @ v)

    def normalized_weight(self) -> torch.Tensor:
        """W_SN = W / sigma(W) (Eq. 8) with the stored u and v, in the module's weight shape."""
        return self.module.weight / self.sigma()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:  # one step of Algorithm 1 per forward pass, then W / sigma(W)
            weight = self.module.weight / self.sigma(*self.power_iteration(self.n_power_iterations))
        else:  # frozen u, v: eval-mode outputs do not change the state
            weight = self.normalized_weight()
        if isinstance(self.module, nn.Conv2d):
            return self.module._conv_forward(x, weight, self.module.bias)
        return F.linear(x, weight, self.module.bias)


def discriminator_loss(
    D: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """-V_D of Eq. 16: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; and the mean scores to log."""
    d_real, d_fake = D(real).flatten(), D(fake).flatten()
    loss = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
    return loss, {"d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()}


def generator_loss(D: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """V_G of Eq. 17: -E[D(G(z))]."""
    return -D(fake).mean()
