"""Building blocks of the module: bounded Gaussian heads and the mixture KL."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Normal, kl_divergence


def bounded(raw: torch.Tensor, bound: float) -> torch.Tensor:
    """Smoothly squash ``raw`` into ``(-bound, bound)``; the identity near zero."""
    return bound * torch.tanh(raw / bound)


class GaussianHead(nn.Module):
    """Mean and variance of a diagonal Gaussian, both kept in a bounded range.

    Parameters
    ----------
    n_in
        Width of the input.
    n_out
        Dimension of the Gaussian.
    mean_bound
        Means stay in ``(-mean_bound, mean_bound)``.
    log_var_bound
        Log variances stay in ``(-log_var_bound, log_var_bound)``.
    """

    def __init__(self, n_in: int, n_out: int, mean_bound: float, log_var_bound: float):
        super().__init__()
        self.mean = nn.Linear(n_in, n_out)
        self.log_var = nn.Linear(n_in, n_out)
        self.mean_bound = mean_bound
        self.log_var_bound = log_var_bound

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = bounded(self.mean(h), self.mean_bound)
        var = torch.exp(bounded(self.log_var(h), self.log_var_bound))
        return mean, var


def kl_to_each_component(qz: Normal, means: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """``KL(q(z|x) || p(z|w, y=k))`` for every mixture component ``k``.

    Parameters
    ----------
    qz
        Posterior of ``z``, batch shape ``(n_cells, n_latent)``.
    means, variances
        The components of ``p(z|w, y)``, shape ``(n_cells, n_components, n_latent)``.

    Returns
    -------
    Tensor of shape ``(n_cells, n_components)``, summed over the latent dimensions.
    """
    posterior = Normal(qz.loc.unsqueeze(1), qz.scale.unsqueeze(1))
    return kl_divergence(posterior, Normal(means, variances.sqrt())).sum(-1)
