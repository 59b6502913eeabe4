"""The Gaussian-mixture VAE module (thesis ch. 5, eq. 5.1–5.20)."""

from __future__ import annotations

import logging
import math
from typing import Literal

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from scvi.module._constants import MODULE_KEYS
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from scvi.nn import FCLayers
from torch import nn
from torch.distributions import Dirichlet, Normal, Poisson, kl_divergence

logger = logging.getLogger(__name__)

GeneLikelihood = Literal["nb", "zinb", "poisson", "normal", "bernoulli"]
COUNT_LIKELIHOODS = ("nb", "zinb", "poisson")
LIKELIHOODS = (*COUNT_LIKELIHOODS, "normal", "bernoulli")
W_PRIORS = ("fixed", "learned")
CONDITION_EFFECTS = ("network", "shift")

CONDITION_KEY = "condition"
"""Registry key of the condition field (CGMVAE)."""

QW_KEY = "qw"
W_KEY = "w"
PROBS_Y_KEY = "probs_y"
QD_KEY = "qd"
D_KEY = "d"
PZ_MEANS_KEY = "pz_means"
PZ_VARS_KEY = "pz_vars"
PW_KEY = "pw"


def _bounded(raw: torch.Tensor, bound: float) -> torch.Tensor:
    """Smoothly squash ``raw`` into ``(-bound, bound)``; the identity near zero."""
    return bound * torch.tanh(raw / bound)


def _kl_diag_normals(
    q_mean: torch.Tensor, q_var: torch.Tensor, p_mean: torch.Tensor, p_var: torch.Tensor
) -> torch.Tensor:
    """KL(q || p) of diagonal Gaussians, summed over the last dimension."""
    return 0.5 * (torch.log(p_var / q_var) + (q_var + (q_mean - p_mean) ** 2) / p_var - 1.0).sum(
        -1
    )


class _GaussianHead(nn.Module):
    """Mean and variance of a diagonal Gaussian, both kept in a bounded range."""

    def __init__(self, n_in: int, n_out: int, mean_bound: float, log_var_bound: float):
        super().__init__()
        self.mean = nn.Linear(n_in, n_out)
        self.log_var = nn.Linear(n_in, n_out)
        self.mean_bound = mean_bound
        self.log_var_bound = log_var_bound

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = _bounded(self.mean(h), self.mean_bound)
        var = torch.exp(_bounded(self.log_var(h), self.log_var_bound))
        return mean, var


class GMVAEModule(BaseModuleClass):
    """Gaussian-mixture VAE with a Dirichlet prior on the mixture weights.

    Latent variables per cell: ``w`` (Gaussian), ``d`` (Dirichlet), ``y`` (categorical,
    integrated out) and ``z`` (Gaussian mixture whose ``n_components`` means and variances are
    decoded from ``w``). With ``n_conditions > 1`` the one-hot condition is fed to every
    sub-network (the conditional model of thesis §5.6).

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
        n_latent: int = 10,
        n_latent_w: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        gene_likelihood: GeneLikelihood = "nb",
        w_prior: Literal["fixed", "learned"] = "fixed",
        dirichlet_alpha: float = 1.0,
        classification_weight: float = 10.0,
        condition_effect: Literal["network", "shift"] = "network",
        normal_variance: Literal["learned", "fixed"] = "learned",
        latent_bound: float = 10.0,
        log_var_bound: float = 9.0,
        library_log_means: torch.Tensor | None = None,
        library_log_vars: torch.Tensor | None = None,
    ):
        super().__init__()
        if gene_likelihood not in LIKELIHOODS:
            raise ValueError(
                f"gene_likelihood={gene_likelihood!r} is not supported; use one of {LIKELIHOODS}."
            )
        if w_prior not in W_PRIORS:
            raise ValueError(f"w_prior={w_prior!r} is not supported; use one of {W_PRIORS}.")
        if n_components < max(n_labels, 1):
            raise ValueError(
                f"n_components={n_components} is smaller than the number of labels "
                f"({n_labels}); use n_components >= {max(n_labels, 1)}."
            )
        if condition_effect not in CONDITION_EFFECTS:
            raise ValueError(
                f"condition_effect={condition_effect!r} is not supported; use one of "
                f"{CONDITION_EFFECTS}."
            )
        if dirichlet_alpha <= 0:
            raise ValueError(f"dirichlet_alpha must be positive, got {dirichlet_alpha}.")
        self.n_input = n_input
        self.n_components = n_components
        self.n_labels = n_labels
        self.n_conditions = n_conditions
        self.n_latent = n_latent
        self.n_latent_w = n_latent_w
        self.gene_likelihood = gene_likelihood
        self.w_prior = w_prior
        self.dirichlet_alpha = dirichlet_alpha
        self.classification_weight = classification_weight
        self.normal_variance = normal_variance
        self.latent_bound = latent_bound
        self.log_var_bound = log_var_bound
        # False trains every cell with the unsupervised loss (Leiden-guided training, §5.5)
        self.use_labels = True

        cat_list = [n_conditions] if n_conditions > 1 else []
        if n_conditions == 0:
            # GMVAE: nothing to shift. A CGMVAE with one condition keeps its shift, so that
            # query data with new conditions can extend it (scArches).
            condition_effect = "network"
        self.condition_effect = condition_effect
        # with a latent shift, the generative networks do not see the condition
        generative_cat_list = cat_list if condition_effect == "network" else []
        n_lib = max(n_conditions, 1)
        self.register_buffer(
            "library_log_means",
            torch.zeros(n_lib) if library_log_means is None else library_log_means.reshape(-1),
        )
        self.register_buffer(
            "library_log_vars",
            torch.ones(n_lib) if library_log_vars is None else library_log_vars.reshape(-1),
        )

        # q(z|x,c) and q(w|x,c) share their hidden layers: the n_genes x n_hidden input layer
        # dominates the cost, and sharing it keeps an epoch as cheap as scVI's.
        self.encoder = FCLayers(
            n_in=n_input,
            n_out=n_hidden,
            n_cat_list=cat_list,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
        )
        self.z_head = _GaussianHead(n_hidden, n_latent, latent_bound, log_var_bound)
        self.w_head = _GaussianHead(n_hidden, n_latent_w, latent_bound, log_var_bound)
        # q(y|z,c) and q(d|z,c)
        self.y_encoder = FCLayers(
            n_latent, n_hidden, n_cat_list=cat_list, n_hidden=n_hidden, dropout_rate=0
        )
        self.y_logits = nn.Linear(n_hidden, n_components)
        self.d_encoder = FCLayers(
            n_latent, n_hidden, n_cat_list=cat_list, n_hidden=n_hidden, dropout_rate=0
        )
        self.d_log_concentration = nn.Linear(n_hidden, n_components)
        # p(z|w,y,c): one network maps (w, c) to the K means and variances
        self.component_decoder = FCLayers(
            n_latent_w, n_hidden, n_cat_list=generative_cat_list, n_hidden=n_hidden, dropout_rate=0
        )
        self.component_head = _GaussianHead(
            n_hidden, n_components * n_latent, latent_bound, log_var_bound
        )
        if condition_effect == "shift":
            self.condition_shift = nn.Parameter(torch.zeros(n_lib, n_latent))
        if w_prior == "learned":
            self.pw_mean = nn.Parameter(torch.zeros(n_lib, n_latent_w))
            self.pw_log_var = nn.Parameter(torch.zeros(n_lib, n_latent_w))
        # p(x|z,c)
        self.decoder = FCLayers(
            n_latent,
            n_hidden,
            n_cat_list=generative_cat_list,
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=0,
        )
        self.px_head = nn.Linear(n_hidden, n_input)
        if gene_likelihood in ("nb", "zinb"):
            self.px_log_theta = nn.Parameter(torch.randn(n_input))
        if gene_likelihood == "zinb":
            self.px_dropout_head = nn.Linear(n_hidden, n_input)
        if gene_likelihood == "normal" and normal_variance == "learned":
            self.px_log_var = nn.Parameter(torch.zeros(n_input))

    @property
    def is_count_model(self) -> bool:
        return self.gene_likelihood in COUNT_LIKELIHOODS

    def _condition_args(self, condition: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        return (condition.long(),) if self.n_conditions > 1 else ()

    def _generative_condition_args(
        self, condition: torch.Tensor | None
    ) -> tuple[torch.Tensor, ...]:
        return self._condition_args(condition) if self.condition_effect == "network" else ()

    def latent_shift(self, condition: torch.Tensor | None, n: int, device) -> torch.Tensor:
        """The condition's move in ``z`` space (zeros unless ``condition_effect="shift"``)."""
        if self.condition_effect != "shift":
            return torch.zeros(n, self.n_latent, device=device)
        return self.condition_shift[self._condition_index(condition, n, device)]

    def _condition_index(self, condition: torch.Tensor | None, n: int, device) -> torch.Tensor:
        if condition is None or self.n_conditions <= 1:
            return torch.zeros(n, dtype=torch.long, device=device)
        return condition.reshape(-1).long()

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        return {
            MODULE_KEYS.X_KEY: tensors[REGISTRY_KEYS.X_KEY],
            "condition": tensors.get(CONDITION_KEY),
        }

    def _get_generative_input(
        self, tensors: dict[str, torch.Tensor], inference_outputs: dict
    ) -> dict:
        return {
            MODULE_KEYS.Z_KEY: inference_outputs[MODULE_KEYS.Z_KEY],
            W_KEY: inference_outputs[W_KEY],
            MODULE_KEYS.LIBRARY_KEY: inference_outputs[MODULE_KEYS.LIBRARY_KEY],
            "condition": tensors.get(CONDITION_KEY),
        }

    def component_probs(self, z: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        """``q(y|z,c)``: the probability of each mixture component."""
        h = self.y_encoder(z, *self._condition_args(condition))
        return F.softmax(self.y_logits(h), dim=-1)

    @auto_move_data
    def encode(
        self, x: torch.Tensor, condition: torch.Tensor | None = None
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
        h = self.encoder(x_in, *self._condition_args(condition))
        qz_mean, qz_var = self.z_head(h)
        qw_mean, qw_var = self.w_head(h)
        return Normal(qz_mean, qz_var.sqrt()), Normal(qw_mean, qw_var.sqrt()), library

    @auto_move_data
    def inference(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> dict:
        """Encode ``x`` (and the condition) into ``q(z)``, ``q(w)``, ``q(y|z)`` and ``q(d|z)``."""
        cond = self._condition_args(condition)
        qz, qw, library = self.encode(x, condition)
        # one sample per cell, as scvi-tools does; callers that want the mean read qz.loc
        z = _bounded(qz.rsample(), self.latent_bound)
        w = _bounded(qw.rsample(), self.latent_bound)
        probs_y = self.component_probs(z, condition)
        # Concentrations in [1e-3, 1e3]: Dirichlet sampling is unstable outside this range.
        concentration = torch.exp(
            _bounded(self.d_log_concentration(self.d_encoder(z, *cond)), math.log(1e3))
        )
        qd = Dirichlet(concentration)
        d = qd.rsample()
        return {
            MODULE_KEYS.QZ_KEY: qz,
            MODULE_KEYS.Z_KEY: z,
            QW_KEY: qw,
            W_KEY: w,
            PROBS_Y_KEY: probs_y,
            QD_KEY: qd,
            D_KEY: d,
            MODULE_KEYS.LIBRARY_KEY: library,
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
        log_var = _bounded(self.pw_log_var[idx], self.log_var_bound)
        return Normal(_bounded(self.pw_mean[idx], self.latent_bound), torch.exp(0.5 * log_var))

    def decode(
        self, z: torch.Tensor, library: torch.Tensor, condition: torch.Tensor | None = None
    ) -> tuple[torch.distributions.Distribution, torch.Tensor]:
        """``p(x|z,c)`` and the normalised expression (``scale``; the mean for non-counts)."""
        h = self.decoder(z, *self._generative_condition_args(condition))
        out = self.px_head(h)
        if self.gene_likelihood == "normal":
            var = (
                F.softplus(self.px_log_var) + 1e-3
                if self.normal_variance == "learned"
                else torch.ones_like(out)
            )
            return Normal(out, var.sqrt().expand_as(out)), out
        if self.gene_likelihood == "bernoulli":
            return _ContinuousBernoulliLike(out), torch.sigmoid(out)
        scale = F.softmax(out, dim=-1)
        rate = torch.exp(library) * scale
        if self.gene_likelihood == "poisson":
            return Poisson(rate.clamp(min=1e-8)), scale
        theta = torch.exp(self.px_log_theta.clamp(-12.0, 12.0))
        if self.gene_likelihood == "zinb":
            return (
                ZeroInflatedNegativeBinomial(
                    mu=rate, theta=theta, zi_logits=self.px_dropout_head(h), scale=scale
                ),
                scale,
            )
        return NegativeBinomial(mu=rate, theta=theta, scale=scale), scale

    @auto_move_data
    def generative(
        self,
        z: torch.Tensor,
        w: torch.Tensor,
        library: torch.Tensor,
        condition: torch.Tensor | None = None,
    ) -> dict:
        """Decode the mixture components from ``w`` and ``p(x|z,c)`` from ``z``."""
        pz_means, pz_vars = self.mixture_components(w, condition)
        px, _ = self.decode(z, library, condition)
        return {
            MODULE_KEYS.PX_KEY: px,
            PZ_MEANS_KEY: pz_means,
            PZ_VARS_KEY: pz_vars,
            PW_KEY: self.w_prior_distribution(condition, w.shape[0], w.device),
        }

    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        kl_weight: float = 1.0,
    ) -> LossOutput:
        """Negative ELBO per cell: supervised for labelled cells, unsupervised for the rest."""
        x = tensors[REGISTRY_KEYS.X_KEY]
        reconstruction = -generative_outputs[MODULE_KEYS.PX_KEY].log_prob(x).sum(-1)

        qz = inference_outputs[MODULE_KEYS.QZ_KEY]
        # KL(q(z|x) || p(z|w, y=j)) for every component j: (n_cells, K)
        kl_z_per_component = _kl_diag_normals(
            qz.loc.unsqueeze(1),
            qz.scale.square().unsqueeze(1),
            generative_outputs[PZ_MEANS_KEY],
            generative_outputs[PZ_VARS_KEY],
        )
        probs_y = inference_outputs[PROBS_Y_KEY].clamp(min=1e-8)
        log_d = torch.log(inference_outputs[D_KEY].clamp(min=1e-8))

        labels = tensors.get(REGISTRY_KEYS.LABELS_KEY)
        if labels is None or self.n_labels == 0 or not self.use_labels:
            labelled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
            label_idx = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        else:
            label_idx = labels.reshape(-1).long()
            labelled = label_idx < self.n_labels
            label_idx = torch.where(labelled, label_idx, torch.zeros_like(label_idx))

        kl_z_unsup = (probs_y * kl_z_per_component).sum(-1)
        kl_y_unsup = (probs_y * (torch.log(probs_y) - log_d)).sum(-1)
        kl_z_sup = kl_z_per_component.gather(1, label_idx[:, None]).squeeze(1)
        kl_y_sup = -log_d.gather(1, label_idx[:, None]).squeeze(1)
        classification = -torch.log(probs_y.gather(1, label_idx[:, None]).squeeze(1))

        kl_z = torch.where(labelled, kl_z_sup, kl_z_unsup)
        kl_y = torch.where(labelled, kl_y_sup, kl_y_unsup)
        classification = torch.where(labelled, classification, torch.zeros_like(classification))
        kl_w = kl_divergence(inference_outputs[QW_KEY], generative_outputs[PW_KEY]).sum(-1)
        qd = inference_outputs[QD_KEY]
        kl_d = kl_divergence(
            qd, Dirichlet(torch.full_like(qd.concentration, self.dirichlet_alpha))
        )

        kl_total = kl_z + kl_w + kl_y + kl_d
        loss = torch.mean(
            reconstruction + kl_weight * kl_total + self.classification_weight * classification
        )
        n_labelled = labelled.sum().clamp(min=1)
        return LossOutput(
            loss=loss,
            reconstruction_loss=reconstruction,
            kl_local={"kl_z": kl_z, "kl_w": kl_w, "kl_y": kl_y, "kl_d": kl_d},
            extra_metrics={
                "reconstruction": reconstruction.mean().detach(),
                "kl_z": kl_z.mean().detach(),
                "kl_w": kl_w.mean().detach(),
                "kl_y": kl_y.mean().detach(),
                "kl_d": kl_d.mean().detach(),
                "classification": (classification.sum() / n_labelled).detach(),
            },
        )


class _ContinuousBernoulliLike(torch.distributions.Distribution):
    """Bernoulli log-likelihood of values in [0, 1] (binary cross-entropy, as in the thesis)."""

    arg_constraints: dict = {}  # noqa: RUF012 (torch's Distribution API)
    has_rsample = False

    def __init__(self, logits: torch.Tensor):
        self.logits = logits
        super().__init__(batch_shape=logits.shape, validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return -F.binary_cross_entropy_with_logits(self.logits, value, reduction="none")

    def sample(self, sample_shape: tuple[int, ...] = ()) -> torch.Tensor:
        return torch.bernoulli(self.mean.expand(torch.Size(sample_shape) + self.logits.shape))
