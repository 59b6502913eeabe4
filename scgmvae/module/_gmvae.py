"""The Gaussian-mixture VAE module (thesis ch. 5, eq. 5.1–5.20)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from scvi.nn import FCLayers
from torch import nn
from torch.distributions import Bernoulli, Dirichlet, Normal, Poisson, kl_divergence

from ._components import GaussianHead, bounded, kl_to_each_component
from ._constants import (
    CONDITION_EFFECTS,
    CONDITION_KEY,
    COUNT_LIKELIHOODS,
    D_KEY,
    DEFAULT_LATENT_BOUND,
    DEFAULT_LOG_VAR_BOUND,
    LIKELIHOODS,
    LOG_DISPERSION_BOUND,
    MAX_LOG_CONCENTRATION,
    NORMAL_VARIANCE_FLOOR,
    PROB_FLOOR,
    PROBS_Y_KEY,
    PW_KEY,
    PZ_MEANS_KEY,
    PZ_VARS_KEY,
    QD_KEY,
    QW_KEY,
    W_KEY,
    W_PRIORS,
    ConditionEffect,
    GeneLikelihood,
    WPrior,
)

# scvi-tools' names of the tensors and outputs the module reads and writes
X, LABELS = REGISTRY_KEYS.X_KEY, REGISTRY_KEYS.LABELS_KEY
BATCH, CAT_COVS, CONT_COVS = (
    REGISTRY_KEYS.BATCH_KEY,
    REGISTRY_KEYS.CAT_COVS_KEY,
    REGISTRY_KEYS.CONT_COVS_KEY,
)
QZ, Z, LIBRARY, PX = "qz", "z", "library", "px"


def _check_choice(name: str, value, choices: Iterable) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use one of {tuple(choices)}.")


class GMVAEModule(BaseModuleClass):
    """Gaussian-mixture VAE with a Dirichlet prior on the mixture weights.

    Latent variables per cell: ``w`` (Gaussian), ``d`` (Dirichlet), ``y`` (categorical,
    integrated out) and ``z`` (Gaussian mixture whose ``n_components`` means and variances are
    decoded from ``w``). With ``n_conditions > 1`` the one-hot condition is fed to every
    sub-network (the conditional model of thesis §5.6). Batch and further covariates enter the
    encoder of ``z`` and ``w`` and the decoder of ``x``, as in scVI, but not the mixture: its
    components are shared by all batches.

    Each cell gets the loss of its kind in the same minibatch: cells whose label index is
    below ``n_labels`` get the supervised loss (thesis §5.4), the others the unsupervised one
    (thesis §5.3). Labels occupy the first ``n_labels`` components; further components are free
    (over-clustering).

    Parameters
    ----------
    n_input
        Number of genes (features).
    n_components
        Number of mixture components ``K``.
    n_labels
        Number of known label categories (0 when no labels are registered).
    n_conditions
        Number of conditions (0 or 1 for the unconditional model).
    n_batch
        Number of batches (0 or 1: no batch effect is modelled).
    n_cats_per_cov
        Number of categories of each further categorical covariate.
    n_continuous_cov
        Number of continuous covariates.
    n_latent
        Dimension of ``z``.
    n_latent_w
        Dimension of ``w``.
    n_hidden
        Width of the hidden layers.
    n_layers
        Number of hidden layers in the encoder and decoder of ``x``.
    dropout_rate
        Dropout in the encoder.
    gene_likelihood
        Observation model of ``x``.
    w_prior
        ``"fixed"``: ``p(w) = N(0, I)``; ``"learned"``: a learned Gaussian per condition.
    dirichlet_alpha
        Concentration of the symmetric Dirichlet prior ``p(d)``.
    classification_weight
        Weight of ``-log q(y|z)`` for labelled cells.
    condition_effect
        How the condition acts on the generative model (CGMVAE). ``"network"``: the one-hot
        condition is an input of ``p(z|w,y,c)`` and ``p(x|z,c)`` (thesis §5.6); ``"shift"``:
        ``p(z|w,y,c)`` is ``p(z|w,y)`` shifted by a learned vector per condition, shared by all
        components, and ``p(x|z)`` does not see the condition, so a condition change is one
        move in latent space that applies to every cell type (learned latent arithmetic).
    normal_variance
        For ``gene_likelihood="normal"``: a gene-wise learned variance (with a floor) or 1.
    latent_bound
        Means of ``z`` and ``w`` (and of the mixture components) stay in
        ``(-latent_bound, latent_bound)``.
    log_var_bound
        Variances stay in ``(exp(-log_var_bound), exp(log_var_bound))``.
    library_log_means
        Mean of the log library size per condition, used to generate cells.
    library_log_vars
        Variance of the log library size per condition.
    """

    def __init__(
        self,
        n_input: int,
        n_components: int,
        n_labels: int = 0,
        n_conditions: int = 0,
        n_batch: int = 0,
        n_cats_per_cov: Iterable[int] | None = None,
        n_continuous_cov: int = 0,
        n_latent: int = 10,
        n_latent_w: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        gene_likelihood: GeneLikelihood = "nb",
        w_prior: WPrior = "fixed",
        dirichlet_alpha: float = 1.0,
        classification_weight: float = 10.0,
        condition_effect: ConditionEffect = "network",
        normal_variance: str = "learned",
        latent_bound: float = DEFAULT_LATENT_BOUND,
        log_var_bound: float = DEFAULT_LOG_VAR_BOUND,
        library_log_means: torch.Tensor | None = None,
        library_log_vars: torch.Tensor | None = None,
    ):
        super().__init__()
        _check_choice("gene_likelihood", gene_likelihood, LIKELIHOODS)
        _check_choice("w_prior", w_prior, W_PRIORS)
        _check_choice("condition_effect", condition_effect, CONDITION_EFFECTS)
        _check_choice("normal_variance", normal_variance, ("learned", "fixed"))
        if n_components < max(n_labels, 1):
            raise ValueError(
                f"n_components={n_components} is smaller than the number of labels "
                f"({n_labels}); use n_components >= {max(n_labels, 1)} (larger values "
                "over-cluster: the extra components are learned unsupervised)."
            )
        if dirichlet_alpha <= 0:
            raise ValueError(f"dirichlet_alpha must be positive, got {dirichlet_alpha}.")
        self.n_input = n_input
        self.n_components = n_components
        self.n_labels = n_labels
        self.n_conditions = n_conditions
        self.n_batch = n_batch
        self.n_cats_per_cov = list(n_cats_per_cov or [])
        self.n_continuous_cov = n_continuous_cov
        self.n_latent = n_latent
        self.n_latent_w = n_latent_w
        self.gene_likelihood = gene_likelihood
        self.w_prior = w_prior
        self.dirichlet_alpha = dirichlet_alpha
        self.classification_weight = classification_weight
        self.normal_variance = normal_variance
        self.latent_bound = latent_bound
        self.log_var_bound = log_var_bound
        # GMVAE: nothing to shift. A CGMVAE with one condition keeps its shift, so that query
        # data with new conditions can extend it (scArches).
        self.condition_effect = "network" if n_conditions == 0 else condition_effect

        condition_cats = [n_conditions] if n_conditions > 1 else []
        # batch and covariates: inputs of the encoder of z and w and of the decoder of x only
        covariate_cats = [n_batch, *self.n_cats_per_cov]
        n_lib = max(n_conditions, 1)
        self.register_buffer("library_log_means", _per_condition(library_log_means, n_lib, 0.0))
        self.register_buffer("library_log_vars", _per_condition(library_log_vars, n_lib, 1.0))
        self._build_inference(condition_cats, covariate_cats, n_hidden, n_layers, dropout_rate)
        self._build_generative(condition_cats, covariate_cats, n_hidden, n_layers, n_lib)

    def _build_inference(
        self,
        condition_cats: list[int],
        covariate_cats: list[int],
        n_hidden: int,
        n_layers: int,
        dropout_rate: float,
    ) -> None:
        """``q(z|x,c)``, ``q(w|x,c)``, ``q(y|z,c)`` and ``q(d|z,c)``."""
        # q(z|x,c) and q(w|x,c) share their hidden layers: the n_genes x n_hidden input layer
        # dominates the cost, and sharing it keeps an epoch as cheap as scVI's.
        self.encoder = FCLayers(
            n_in=self.n_input + self.n_continuous_cov,
            n_out=n_hidden,
            n_cat_list=condition_cats + covariate_cats,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
        )
        self.z_head = GaussianHead(n_hidden, self.n_latent, self.latent_bound, self.log_var_bound)
        self.w_head = GaussianHead(
            n_hidden, self.n_latent_w, self.latent_bound, self.log_var_bound
        )
        self.y_encoder = FCLayers(
            self.n_latent, n_hidden, n_cat_list=condition_cats, n_hidden=n_hidden, dropout_rate=0
        )
        self.y_logits = nn.Linear(n_hidden, self.n_components)
        self.d_encoder = FCLayers(
            self.n_latent, n_hidden, n_cat_list=condition_cats, n_hidden=n_hidden, dropout_rate=0
        )
        self.d_log_concentration = nn.Linear(n_hidden, self.n_components)

    def _build_generative(
        self,
        condition_cats: list[int],
        covariate_cats: list[int],
        n_hidden: int,
        n_layers: int,
        n_lib: int,
    ) -> None:
        """``p(z|w,y,c)``, ``p(w|c)`` and ``p(x|z,c)``."""
        # with a latent shift, the generative networks do not see the condition
        generative_cats = condition_cats if self.condition_effect == "network" else []
        # one network maps (w, c) to the K means and variances of the mixture
        self.component_decoder = FCLayers(
            self.n_latent_w,
            n_hidden,
            n_cat_list=generative_cats,
            n_hidden=n_hidden,
            dropout_rate=0,
        )
        self.component_head = GaussianHead(
            n_hidden, self.n_components * self.n_latent, self.latent_bound, self.log_var_bound
        )
        if self.condition_effect == "shift":
            self.condition_shift = nn.Parameter(torch.zeros(n_lib, self.n_latent))
        if self.w_prior == "learned":
            self.pw_mean = nn.Parameter(torch.zeros(n_lib, self.n_latent_w))
            self.pw_log_var = nn.Parameter(torch.zeros(n_lib, self.n_latent_w))
        self.decoder = FCLayers(
            self.n_latent + self.n_continuous_cov,
            n_hidden,
            n_cat_list=generative_cats + covariate_cats,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=0,
        )
        self.px_head = nn.Linear(n_hidden, self.n_input)
        if self.gene_likelihood in ("nb", "zinb"):
            self.px_log_theta = nn.Parameter(torch.randn(self.n_input))
        if self.gene_likelihood == "zinb":
            self.px_dropout_head = nn.Linear(n_hidden, self.n_input)
        if self.gene_likelihood == "normal" and self.normal_variance == "learned":
            self.px_log_var = nn.Parameter(torch.zeros(self.n_input))

    # -- conditions and covariates ---------------------------------------------------------

    @property
    def is_count_model(self) -> bool:
        return self.gene_likelihood in COUNT_LIKELIHOODS

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

    # -- scvi-tools' module interface ------------------------------------------------------

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        return {
            "x": tensors[X],
            "condition": tensors.get(CONDITION_KEY),
            "batch_index": tensors.get(BATCH),
            "cat_covs": tensors.get(CAT_COVS),
            "cont_covs": tensors.get(CONT_COVS),
        }

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict
    ) -> dict:
        return {
            "z": inference_outputs[Z],
            "w": inference_outputs[W_KEY],
            "library": inference_outputs[LIBRARY],
            "condition": tensors.get(CONDITION_KEY),
            "batch_index": tensors.get(BATCH),
            "cat_covs": tensors.get(CAT_COVS),
            "cont_covs": tensors.get(CONT_COVS),
        }

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
        theta = torch.exp(self.px_log_theta.clamp(-LOG_DISPERSION_BOUND, LOG_DISPERSION_BOUND))
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

    # -- the ELBO --------------------------------------------------------------------------

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


def _per_condition(values: torch.Tensor | None, n: int, default: float) -> torch.Tensor:
    return torch.full((n,), default) if values is None else values.reshape(-1)
