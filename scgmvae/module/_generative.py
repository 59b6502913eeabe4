"""The generative model: ``p(z|w,y,c)``, ``p(w|c)`` and ``p(x|z,c)`` (thesis §5.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from scvi.module.base import auto_move_data
from torch.distributions import Bernoulli, Normal, Poisson

from ._components import bounded
from ._constants import (
    LOG_DISPERSION_BOUND,
    NORMAL_VARIANCE_FLOOR,
    PROB_FLOOR,
    PW_KEY,
    PX,
    PZ_MEANS_KEY,
    PZ_VARS_KEY,
)


class GenerativeMixin:
    """The mixture components decoded from ``w``, the prior of ``w``, the likelihood of ``x``."""

    def mixture_components(
        self, w: torch.Tensor, condition: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and variances of ``p(z|w,y,c)`` for all components: ``(n, K, n_latent)``."""
        h = self.component_decoder(w, *self._generative_condition_args(condition))
        means, variances = self.component_head(h)
        shape = (w.shape[0], self.n_components, self.n_latent)
        shift = self.latent_shift(condition, w.shape[0], w.device)
        return means.reshape(shape) + shift[:, None, :], variances.reshape(shape)

    def w_prior_distribution(self, condition: torch.Tensor | None, n: int, device) -> Normal:
        """``p(w|c)``."""
        if self.w_prior == "fixed":
            zeros = torch.zeros(n, self.n_latent_w, device=device)
            return Normal(zeros, torch.ones_like(zeros))
        idx = self._condition_index(condition, n, device)
        log_var = bounded(self.pw_log_var[idx], self.log_var_bound)
        return Normal(bounded(self.pw_mean[idx], self.latent_bound), torch.exp(0.5 * log_var))

    def decode(
        self,
        z: torch.Tensor,
        library: torch.Tensor,
        condition: torch.Tensor | None = None,
        batch_index: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
        cont_covs: torch.Tensor | None = None,
    ) -> tuple[torch.distributions.Distribution, torch.Tensor]:
        """``p(x|z,c)`` and the normalised expression (``scale``; the mean for non-counts).

        Without ``batch_index`` (or ``cat_covs``) the cells are decoded as cells of the first
        batch (category); without ``cont_covs``, at continuous covariates of 0.
        """
        h = self.decoder(
            self._with_continuous(z, cont_covs),
            *self._generative_condition_args(condition),
            *self._covariate_args(z, batch_index, cat_covs),
        )
        out = self.px_head(h)
        if self.gene_likelihood == "normal":
            if self.normal_variance == "learned":
                var = F.softplus(self.px_log_var) + NORMAL_VARIANCE_FLOOR
            else:
                var = torch.ones_like(out)
            return Normal(out, var.sqrt().expand_as(out)), out
        if self.gene_likelihood == "bernoulli":
            # values in [0, 1], not only 0 and 1: the binary cross-entropy of the thesis
            return Bernoulli(logits=out, validate_args=False), torch.sigmoid(out)
        scale = F.softmax(out, dim=-1)
        rate = torch.exp(library) * scale
        if self.gene_likelihood == "poisson":
            return Poisson(rate.clamp(min=PROB_FLOOR)), scale
        log_theta = (
            self.px_log_theta_head(h) if self.dispersion == "gene-cell" else self.px_log_theta
        )
        theta = torch.exp(log_theta.clamp(-LOG_DISPERSION_BOUND, LOG_DISPERSION_BOUND))
        if self.gene_likelihood == "zinb":
            zi_logits = self.px_dropout_head(h)
            return ZeroInflatedNegativeBinomial(
                mu=rate, theta=theta, zi_logits=zi_logits, scale=scale
            ), scale
        return NegativeBinomial(mu=rate, theta=theta, scale=scale), scale

    @auto_move_data
    def generative(
        self,
        z: torch.Tensor,
        w: torch.Tensor,
        library: torch.Tensor,
        condition: torch.Tensor | None = None,
        batch_index: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
        cont_covs: torch.Tensor | None = None,
    ) -> dict:
        """Decode the mixture components from ``w`` and ``p(x|z,c)`` from ``z``."""
        pz_means, pz_vars = self.mixture_components(w, condition)
        px, _ = self.decode(z, library, condition, batch_index, cat_covs, cont_covs)
        return {
            PX: px,
            PZ_MEANS_KEY: pz_means,
            PZ_VARS_KEY: pz_vars,
            PW_KEY: self.w_prior_distribution(condition, w.shape[0], w.device),
        }
