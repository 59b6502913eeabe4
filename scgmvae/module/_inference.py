"""The inference model: ``q(z|x,c)``, ``q(w|x,c)``, ``q(y|z,c)`` and ``q(d|z,c)`` (thesis §5.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scvi.module.base import auto_move_data
from torch.distributions import Dirichlet, Normal

from ._components import bounded
from ._constants import (
    D_KEY,
    LIBRARY,
    MAX_LOG_CONCENTRATION,
    PROBS_Y_KEY,
    QD_KEY,
    QW_KEY,
    QZ,
    W_KEY,
    Z,
)


class InferenceMixin:
    """Encodes cells into the posteriors of ``z``, ``w``, ``y`` and ``d``."""

    @auto_move_data
    def encode(
        self,
        x: torch.Tensor,
        condition: torch.Tensor | None = None,
        batch_index: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
        cont_covs: torch.Tensor | None = None,
    ) -> tuple[Normal, Normal, torch.Tensor]:
        """``q(z|x,c)``, ``q(w|x,c)`` and the log library size, without sampling anything.

        The part of :meth:`inference` that latent representations need.
        """
        if self.is_count_model:
            library = torch.log(x.sum(1, keepdim=True).clamp(min=1.0))
            x_in = torch.log1p(x)
        else:
            library = torch.zeros(x.shape[0], 1, device=x.device)
            x_in = x
        h = self.encoder(
            self._with_continuous(x_in, cont_covs),
            *self._condition_args(condition),
            *self._covariate_args(x_in, batch_index, cat_covs),
        )
        qz_mean, qz_var = self.z_head(h)
        qw_mean, qw_var = self.w_head(h)
        return Normal(qz_mean, qz_var.sqrt()), Normal(qw_mean, qw_var.sqrt()), library

    def component_probs(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """``q(y|z,c)``: the probability of each mixture component."""
        h = self.y_encoder(z, *self._condition_args(condition))
        return F.softmax(self.y_logits(h), dim=-1)

    def dirichlet_posterior(self, z: torch.Tensor, condition: torch.Tensor | None) -> Dirichlet:
        """``q(d|z,c)``."""
        h = self.d_encoder(z, *self._condition_args(condition))
        log_concentration = bounded(self.d_log_concentration(h), MAX_LOG_CONCENTRATION)
        return Dirichlet(torch.exp(log_concentration))

    @auto_move_data
    def inference(
        self,
        x: torch.Tensor,
        condition: torch.Tensor | None = None,
        batch_index: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
        cont_covs: torch.Tensor | None = None,
    ) -> dict:
        """Encode ``x`` into ``q(z)``, ``q(w)``, ``q(y|z)`` and ``q(d|z)``; sample z, w, d."""
        qz, qw, library = self.encode(x, condition, batch_index, cat_covs, cont_covs)
        # one sample per cell, as scvi-tools does; callers that want the mean read qz.loc
        z = bounded(qz.rsample(), self.latent_bound)
        w = bounded(qw.rsample(), self.latent_bound)
        probs_y = self.component_probs(z, condition)
        qd = self.dirichlet_posterior(z, condition)
        return {
            QZ: qz,
            Z: z,
            QW_KEY: qw,
            W_KEY: w,
            PROBS_Y_KEY: probs_y,
            QD_KEY: qd,
            D_KEY: qd.rsample(),
            LIBRARY: library,
        }
