"""The Gaussian-mixture VAE module (thesis ch. 5, eq. 5.1–5.20)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from scvi.module.base import BaseModuleClass

from ._constants import (
    BATCH,
    CAT_COVS,
    CONDITION_EFFECTS,
    CONDITION_KEY,
    CONT_COVS,
    COUNT_LIKELIHOODS,
    DEFAULT_LATENT_BOUND,
    DEFAULT_LOG_VAR_BOUND,
    DISPERSION_LIKELIHOODS,
    DISPERSIONS,
    LIBRARY,
    LIKELIHOODS,
    W_KEY,
    W_PRIORS,
    ConditionEffect,
    Dispersion,
    GeneLikelihood,
    WPrior,
    X,
    Z,
)
from ._covariates import CovariatesMixin
from ._elbo import ELBOMixin
from ._generative import GenerativeMixin
from ._inference import InferenceMixin
from ._networks import NetworksMixin


def _check_choice(name: str, value, choices: Iterable) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use one of {tuple(choices)}.")


class GMVAEModule(
    ELBOMixin, GenerativeMixin, InferenceMixin, NetworksMixin, CovariatesMixin, BaseModuleClass
):
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
    dispersion
        For ``gene_likelihood="nb"`` or ``"zinb"``: ``"gene"``, one inverse dispersion per
        gene; ``"gene-cell"``, decoded from ``z`` with the mean, so that cells of different
        states (cell types, conditions) have their own spread around their mean.
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
        dispersion: Dispersion = "gene",
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
        _check_choice("dispersion", dispersion, DISPERSIONS)
        if dispersion != "gene" and gene_likelihood not in DISPERSION_LIKELIHOODS:
            raise ValueError(
                f"dispersion={dispersion!r} needs a negative-binomial likelihood "
                f"(gene_likelihood in {DISPERSION_LIKELIHOODS}), got "
                f"gene_likelihood={gene_likelihood!r}, which has no dispersion."
            )
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
        self.dispersion = dispersion
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

    @property
    def is_count_model(self) -> bool:
        return self.gene_likelihood in COUNT_LIKELIHOODS

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


def _per_condition(values: torch.Tensor | None, n: int, default: float) -> torch.Tensor:
    return torch.full((n,), default) if values is None else values.reshape(-1)
