"""The networks of the module: the encoders of ``q`` and the decoders of ``p``."""

from __future__ import annotations

import torch
from scvi.nn import FCLayers
from torch import nn

from ._components import GaussianHead
from ._constants import DISPERSION_LIKELIHOODS


class NetworksMixin:
    """Builds the networks of the inference and the generative model."""

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
        if self.gene_likelihood in DISPERSION_LIKELIHOODS:
            if self.dispersion == "gene-cell":
                self.px_log_theta_head = nn.Linear(n_hidden, self.n_input)
            else:
                self.px_log_theta = nn.Parameter(torch.randn(self.n_input))
        if self.gene_likelihood == "zinb":
            self.px_dropout_head = nn.Linear(n_hidden, self.n_input)
        if self.gene_likelihood == "normal" and self.normal_variance == "learned":
            self.px_log_var = nn.Parameter(torch.zeros(self.n_input))
