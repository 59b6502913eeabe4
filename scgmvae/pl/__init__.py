"""Plots of scgmvae results: latent UMAPs, perturbation regressions, generated cells, losses."""

from ._regression import mean_regression
from ._training import loss_history
from ._umap import generated_vs_real, latent_umap

__all__ = ["generated_vs_real", "latent_umap", "loss_history", "mean_regression"]
