"""The negative ELBO with its named terms (thesis eq. 5.3–5.18) and the marginal likelihood."""

from __future__ import annotations

import math

import torch
from scvi.module.base import LossOutput
from torch.distributions import Dirichlet, Normal, kl_divergence

from ._components import kl_to_each_component
from ._constants import (
    CONDITION_KEY,
    D_KEY,
    LABELS,
    PROB_FLOOR,
    PROBS_Y_KEY,
    PW_KEY,
    PX,
    PZ_MEANS_KEY,
    PZ_VARS_KEY,
    QD_KEY,
    QW_KEY,
    QZ,
    X,
)


class ELBOMixin:
    """The loss of labelled and unlabelled cells, term by term, and ``log p(x)``."""

    def observed_components(self, tensors: dict[str, torch.Tensor], use_labels: bool = True):
        """The labelled component of each cell, -1 for unlabelled cells.

        Labels occupy the first ``n_labels`` components; the unlabelled category comes after
        them (scvi-tools' ``LabelsWithUnlabeledObsField`` puts it last).
        """
        labels = tensors.get(LABELS)
        n = tensors[X].shape[0]
        if labels is None or self.n_labels == 0 or not use_labels:
            return torch.full((n,), -1, dtype=torch.long, device=tensors[X].device)
        labels = labels.reshape(-1).long()
        return torch.where(labels < self.n_labels, labels, torch.full_like(labels, -1))

    @staticmethod
    def unsupervised_terms(
        kl_z_components: torch.Tensor, probs_y: torch.Tensor, log_d: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``z`` and ``y`` terms of an unlabelled cell, ``y`` integrated out under ``q(y|z)``.

        Thesis eq. 5.6, ``E_q(y|z)[KL(q(z|x) || p(z|w,y))]``, and eq. 5.8,
        ``KL(q(y|z) || p(y|d))``.
        """
        kl_z = (probs_y * kl_z_components).sum(-1)
        kl_y = (probs_y * (torch.log(probs_y) - log_d)).sum(-1)
        return kl_z, kl_y

    @staticmethod
    def supervised_terms(
        kl_z_components: torch.Tensor,
        probs_y: torch.Tensor,
        log_d: torch.Tensor,
        components: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ``z`` and ``y`` terms of a labelled cell, whose component is observed.

        Thesis eq. 5.14, ``KL(q(z|x) || p(z|w,y))`` for the observed ``y``; eq. 5.17,
        ``-log p(y|d)``; eq. 5.16, the classification term ``-log q(y|z)``.
        """
        observed = components[:, None]
        kl_z = kl_z_components.gather(1, observed).squeeze(1)
        kl_y = -log_d.gather(1, observed).squeeze(1)
        classification = -torch.log(probs_y.gather(1, observed).squeeze(1))
        return kl_z, kl_y, classification

    @staticmethod
    def broad_terms(qz: Normal, shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``z`` and ``y`` terms of an unlabelled cell under one broad component.

        ``KL(q(z|x) || N(shift_c, I))``, as in a plain VAE, and no ``y`` to infer: the terms of
        the pre-training phase of :class:`~scgmvae.train.ClusterInit`.
        """
        kl_z = kl_divergence(qz, Normal(shift, torch.ones_like(shift))).sum(-1)
        return kl_z, torch.zeros_like(kl_z)

    def nearest_centres(
        self, z_mean: torch.Tensor, condition: torch.Tensor | None, centres: torch.Tensor
    ) -> torch.Tensor:
        """Index of the nearest of ``centres`` to each cell, in ``z`` minus the condition shift."""
        shift = self.latent_shift(condition, z_mean.shape[0], z_mean.device)
        return torch.cdist((z_mean - shift).detach(), centres).argmin(1)

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        kl_weight: float = 1.0,
        use_labels: bool = True,
        guide_centres: torch.Tensor | None = None,
        guide_components: torch.Tensor | None = None,
        broad_prior: bool = False,
    ) -> LossOutput:
        """Negative ELBO per cell (thesis eq. 5.3–5.18), averaged over the minibatch.

        Labelled cells get the supervised terms, unlabelled cells the unsupervised ones;
        ``use_labels=False`` treats every cell as unlabelled. The KL terms are weighted by
        ``kl_weight`` (warm-up), the classification term by ``classification_weight``.
        :class:`~scgmvae.train.ClusterInit` passes ``broad_prior`` (unlabelled cells get
        :meth:`broad_terms`) and ``guide_centres`` (unlabelled cells take the nearest centre as
        their label, or its entry of ``guide_components`` when given).
        """
        x = tensors[X]
        # eq. 5.5 / 5.13
        reconstruction = -generative_outputs[PX].log_prob(x).sum(-1)
        # eq. 5.7 / 5.15
        kl_w = kl_divergence(inference_outputs[QW_KEY], generative_outputs[PW_KEY]).sum(-1)
        # eq. 5.9 / 5.18
        qd = inference_outputs[QD_KEY]
        kl_d = kl_divergence(
            qd, Dirichlet(torch.full_like(qd.concentration, self.dirichlet_alpha))
        )
        qz, probs_y = inference_outputs[QZ], inference_outputs[PROBS_Y_KEY].clamp(min=PROB_FLOOR)
        components = self.observed_components(tensors, use_labels)
        if guide_centres is not None:
            condition = tensors.get(CONDITION_KEY)
            nearest = self.nearest_centres(qz.loc, condition, guide_centres)
            if guide_components is not None:
                nearest = guide_components[nearest]
            components = torch.where(components >= 0, components, nearest)
        labelled = components >= 0
        kl_z, kl_y, classification = self._z_and_y_terms(
            tensors, inference_outputs, generative_outputs, components, broad_prior
        )

        kl_local = {"kl_z": kl_z, "kl_w": kl_w, "kl_y": kl_y, "kl_d": kl_d}
        loss = torch.mean(
            reconstruction
            + kl_weight * sum(kl_local.values())
            + self.classification_weight * classification
        )
        n_labelled = labelled.sum().clamp(min=1)
        classification_loss = classification.sum() / n_labelled
        return LossOutput(
            loss=loss,
            reconstruction_loss=reconstruction,
            kl_local=kl_local,
            classification_loss=classification_loss if self.n_labels else None,
            logits=torch.log(probs_y[labelled]) if self.n_labels else None,
            true_labels=components[labelled] if self.n_labels else None,
            extra_metrics={
                "reconstruction": reconstruction.mean().detach(),
                **{name: term.mean().detach() for name, term in kl_local.items()},
                "classification": classification_loss.detach(),
            },
        )

    def _z_and_y_terms(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        components: torch.Tensor,
        broad_prior: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per cell ``kl_z``, ``kl_y`` and the classification term, each cell by its kind."""
        qz = inference_outputs[QZ]
        kl_z_components = kl_to_each_component(
            qz, generative_outputs[PZ_MEANS_KEY], generative_outputs[PZ_VARS_KEY]
        )
        probs_y = inference_outputs[PROBS_Y_KEY].clamp(min=PROB_FLOOR)
        log_d = torch.log(inference_outputs[D_KEY].clamp(min=PROB_FLOOR))
        labelled = components >= 0
        unlabelled = ~labelled
        kl_z, kl_y, classification = (torch.zeros_like(log_d[:, 0]) for _ in range(3))
        if broad_prior:
            shift = self.latent_shift(tensors.get(CONDITION_KEY), len(kl_z), kl_z.device)
            kl_z[unlabelled], kl_y[unlabelled] = self.broad_terms(
                Normal(qz.loc[unlabelled], qz.scale[unlabelled]), shift[unlabelled]
            )
        else:
            kl_z[unlabelled], kl_y[unlabelled] = self.unsupervised_terms(
                kl_z_components[unlabelled], probs_y[unlabelled], log_d[unlabelled]
            )
        kl_z[labelled], kl_y[labelled], classification[labelled] = self.supervised_terms(
            kl_z_components[labelled], probs_y[labelled], log_d[labelled], components[labelled]
        )
        return kl_z, kl_y, classification

    @torch.inference_mode()
    def marginal_ll(
        self, tensors: dict[str, torch.Tensor], n_mc_samples: int, return_mean: bool = False
    ) -> torch.Tensor | float:
        """Importance-sampled ``log p(x)`` of each cell.

        ``z`` and ``w`` are drawn from their posteriors; ``y`` and ``d`` are integrated out
        exactly (under a symmetric Dirichlet prior every component has prior probability
        ``1/K``).

        Parameters
        ----------
        tensors
            A minibatch, as the data loaders give it.
        n_mc_samples
            Number of importance samples per cell.
        return_mean
            Return the mean over the cells instead of one value per cell.

        Returns
        -------
        Tensor of shape ``(n_cells,)``, or its mean.
        """
        inputs = self._get_inference_input(tensors)
        qz, qw, library = self.encode(**inputs)
        condition = inputs["condition"]
        covariates = {key: inputs[key] for key in ("batch_index", "cat_covs", "cont_covs")}
        pw = self.w_prior_distribution(condition, qw.loc.shape[0], qw.loc.device)
        log_weights = []
        for _ in range(n_mc_samples):
            z, w = qz.sample(), qw.sample()
            means, variances = self.mixture_components(w, condition)
            log_pz_given_w = torch.logsumexp(
                Normal(means, variances.sqrt()).log_prob(z[:, None]).sum(-1), dim=-1
            ) - math.log(self.n_components)
            px, _ = self.decode(z, library, condition, **covariates)
            log_weights.append(
                px.log_prob(inputs["x"]).sum(-1)
                + log_pz_given_w
                + pw.log_prob(w).sum(-1)
                - qz.log_prob(z).sum(-1)
                - qw.log_prob(w).sum(-1)
            )
        log_px = torch.logsumexp(torch.stack(log_weights), dim=0) - math.log(n_mc_samples)
        return log_px.mean().item() if return_mean else log_px.cpu()
