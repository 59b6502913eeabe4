"""How the condition, the batch and the covariates enter the module's networks."""

from __future__ import annotations

import torch


class CovariatesMixin:
    """The condition's one-hot input or latent shift, and the batch and covariate inputs."""

    def _condition_args(self, condition: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        return (condition.long(),) if self.n_conditions > 1 else ()

    def _generative_condition_args(
        self, condition: torch.Tensor | None
    ) -> tuple[torch.Tensor, ...]:
        return self._condition_args(condition) if self.condition_effect == "network" else ()

    def _covariate_args(
        self, h: torch.Tensor, batch_index: torch.Tensor | None, cat_covs: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        """The batch and the categorical covariates of the cells of ``h``, one column each.

        Missing ones (e.g. when generating cells) default to the first category.
        """
        first = torch.zeros(h.shape[0], 1, dtype=torch.long, device=h.device)
        if batch_index is None and self.n_batch > 1:
            batch_index = first
        if not self.n_cats_per_cov:
            return (batch_index,)
        if cat_covs is None:
            cat_covs = first.expand(-1, len(self.n_cats_per_cov))
        return (batch_index, *torch.split(cat_covs.long(), 1, dim=1))

    def _with_continuous(self, h: torch.Tensor, cont_covs: torch.Tensor | None) -> torch.Tensor:
        """``h`` with the continuous covariates appended (zeros when they are not given)."""
        if self.n_continuous_cov == 0:
            return h
        if cont_covs is None:
            cont_covs = torch.zeros(h.shape[0], self.n_continuous_cov, device=h.device)
        return torch.cat([h, cont_covs.to(h.dtype)], dim=-1)

    def _condition_index(self, condition: torch.Tensor | None, n: int, device) -> torch.Tensor:
        if condition is None or self.n_conditions <= 1:
            return torch.zeros(n, dtype=torch.long, device=device)
        return condition.reshape(-1).long()

    def latent_shift(self, condition: torch.Tensor | None, n: int, device) -> torch.Tensor:
        """The condition's move in ``z`` space (zeros unless ``condition_effect="shift"``)."""
        if self.condition_effect != "shift":
            return torch.zeros(n, self.n_latent, device=device)
        return self.condition_shift[self._condition_index(condition, n, device)]
