"""Baselines of the second seed report: a deep autoencoder, a beta-VAE and a beta-VSC.

The report (``vae_scrnaseq_report.txt``, "Variational autoencoders for single-cell
transcriptomics data") trains three small fully connected models on log-normalised PBMCs with
a squared-error reconstruction and clusters their latent space with k-means. They are written
here as scvi-tools modules and models so that ``clustering.py`` can train them with scvi's
trainer; they are benchmark baselines, not part of the package API.

Settings taken from the report: the layer widths 128, 32, 16 and the 6 latent dimensions of
section 2.4 (the decoder mirrors the encoder), a linear first layer and ReLU after the others,
a ReLU on the autoencoder's code (by default; the report's public code leaves it linear),
separate 16-unit branches for each latent parameter, the encoder outputting ``log sigma``,
beta = 2 for the beta-VAE and the beta-VSC (section 3), the summed squared error of section
2.1.1, Adam at learning rate 1e-3, batches of 256 cells and training on all cells (sections
1.4 and 3). Not in the report, taken from its public code and from Tonolini et al. (2019): the
prior spike probability ``alpha`` = 0.5 and the sharpness ``c`` = 50 of the relaxed spike
selection. Chosen here: the spike head outputs logits (the report writes ``log spike``; a
logit keeps the probability in (0, 1) with a gradient everywhere) and plain Adam (no weight
decay, eps 1e-8) instead of scvi-tools' defaults.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scvi
import torch
import torch.nn.functional as F
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from sklearn.cluster import KMeans
from torch import nn

import scgmvae

HIDDEN = (128, 32, 16)  # report §2.4: encoder widths; the decoder runs them backwards
N_LATENT = 6  # report §2.4 and §3
BETA = 2.0  # report §3: the value used for both models with a beta-constraint
BATCH_SIZE = 256  # report §1.4
LEARNING_RATE = 1e-3  # report §3, Adam
ADAM_EPS = 1e-8  # torch's default: the report uses plain Adam, scvi-tools' plan uses 0.01
TRAIN_SIZE = 1.0  # report §1.4: unsupervised, so every cell is used for training
PRIOR_SPIKE = 0.5  # alpha of the spike-and-slab prior (the report's public code)
SELECTION_SHARPNESS = 50.0  # c of the sigmoid selection (the report's public code, Tonolini)
KMEANS_INITS = 10


def _head(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    """One branch of the report's encoder: a ReLU layer then a linear output."""
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_out))


def _gaussian_kl(mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_scale)^2) || N(0, 1)) per latent dimension."""
    return 0.5 * (mean.pow(2) + torch.exp(2 * log_scale) - 1) - log_scale


class _SeedModule(BaseModuleClass):
    """Shared pieces: the encoder trunk, the decoder and the squared-error reconstruction.

    Parameters
    ----------
    n_input
        Number of genes.
    n_latent
        Dimension of the latent space.
    beta
        Weight of the KL term (unused by the autoencoder).
    """

    def __init__(self, n_input: int, n_latent: int = N_LATENT, beta: float = BETA):
        super().__init__()
        first, second, third = HIDDEN
        self.n_latent = n_latent
        self.beta = beta
        # the report's h1 has no activation: the first two layers act as one wide linear map
        self.trunk = nn.Sequential(nn.Linear(n_input, first), nn.Linear(first, second), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.Linear(n_latent, third),
            nn.ReLU(),
            nn.Linear(third, second),
            nn.ReLU(),
            nn.Linear(second, first),
            nn.ReLU(),
            nn.Linear(first, n_input),
        )

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        return {"x": tensors[REGISTRY_KEYS.X_KEY]}

    def _get_generative_input(self, tensors: dict[str, torch.Tensor], inference_outputs: dict):
        return {"z": inference_outputs["z"]}

    @auto_move_data
    def generative(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decode the latent sample into the reconstruction ``x_hat``."""
        return {"x_hat": self.decoder(z)}

    @staticmethod
    def _squared_error(tensors: dict, generative_outputs: dict) -> torch.Tensor:
        """Summed squared error per cell (report §2.1.1; a Gaussian of variance 1/2)."""
        x = tensors[REGISTRY_KEYS.X_KEY]
        return (x - generative_outputs["x_hat"]).pow(2).sum(-1)

    def _kl(self, inference_outputs: dict) -> torch.Tensor:
        """KL divergence of each cell's posterior from the prior, summed over dimensions."""
        raise NotImplementedError

    def loss(self, tensors: dict, inference_outputs: dict, generative_outputs: dict) -> LossOutput:
        """Squared error plus ``beta`` times the KL term, averaged over the cells.

        The signature has no ``kl_weight``, so scvi-tools' KL warm-up does not apply: the
        report trains with the full weight from the start.
        """
        reconstruction = self._squared_error(tensors, generative_outputs)
        kl = self._kl(inference_outputs)
        loss = (reconstruction + self.beta * kl).mean()
        return LossOutput(loss=loss, reconstruction_loss=reconstruction, kl_local=kl)


class AEModule(_SeedModule):
    """Deterministic deep autoencoder of the report (§2.4.1).

    Parameters
    ----------
    n_input
        Number of genes.
    n_latent
        Dimension of the code.
    relu_code
        Apply a ReLU to the code, as the report's equations do; its public code leaves the
        code linear. A ReLU code can lose dimensions that stay at zero for every cell.
    """

    def __init__(self, n_input: int, n_latent: int = N_LATENT, relu_code: bool = True):
        super().__init__(n_input, n_latent, beta=0.0)
        _, second, third = HIDDEN
        head = _head(second, third, n_latent)
        self.code = nn.Sequential(head, nn.ReLU()) if relu_code else head

    @auto_move_data
    def inference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode ``x``; the code is both the sample ``z`` and the latent mean ``qz_mean``."""
        z = self.code(self.trunk(x))
        return {"z": z, "qz_mean": z}

    def _kl(self, inference_outputs: dict) -> torch.Tensor:
        return torch.zeros_like(inference_outputs["z"][:, 0])


class BetaVAEModule(_SeedModule):
    """beta-VAE of the report (§2.4.2): Gaussian posterior, standard normal prior."""

    def __init__(self, n_input: int, n_latent: int = N_LATENT, beta: float = BETA):
        super().__init__(n_input, n_latent, beta)
        _, second, third = HIDDEN
        self.mean = _head(second, third, n_latent)
        self.log_scale = _head(second, third, n_latent)

    @auto_move_data
    def inference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Posterior mean and log standard deviation, and a reparametrised sample ``z``."""
        h = self.trunk(x)
        mean, log_scale = self.mean(h), self.log_scale(h)
        z = mean + torch.exp(log_scale) * torch.randn_like(mean)
        return {"z": z, "qz_mean": mean, "log_scale": log_scale}

    def _kl(self, inference_outputs: dict) -> torch.Tensor:
        kl = _gaussian_kl(inference_outputs["qz_mean"], inference_outputs["log_scale"])
        return kl.sum(-1)


class BetaVSCModule(_SeedModule):
    """beta-VSC (report §2.4, beta-VSC; Tonolini et al. 2019): spike-and-slab posterior and prior.

    Each latent dimension is zero with probability ``1 - gamma`` and Gaussian otherwise; the
    prior is zero with probability ``1 - prior_spike`` and N(0, 1) otherwise. Sampling replaces
    the Bernoulli selection by ``sigmoid(c * (eta + gamma - 1))`` with ``eta ~ U(0, 1)``, which
    tends to the indicator of ``eta > 1 - gamma`` as ``c`` grows.

    Parameters
    ----------
    n_input
        Number of genes.
    n_latent
        Dimension of the latent space.
    beta
        Weight of the KL term.
    prior_spike
        Prior probability ``alpha`` that a latent dimension is active (the slab).
    selection_sharpness
        ``c`` of the relaxed selection.
    """

    def __init__(
        self,
        n_input: int,
        n_latent: int = N_LATENT,
        beta: float = BETA,
        prior_spike: float = PRIOR_SPIKE,
        selection_sharpness: float = SELECTION_SHARPNESS,
    ):
        super().__init__(n_input, n_latent, beta)
        _, second, third = HIDDEN
        self.prior_spike = prior_spike
        self.selection_sharpness = selection_sharpness
        self.mean = _head(second, third, n_latent)
        self.log_scale = _head(second, third, n_latent)
        self.spike_logits = _head(second, third, n_latent)

    @auto_move_data
    def inference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Slab parameters, spike logits, a relaxed sample ``z`` and its mean ``gamma * mu``."""
        h = self.trunk(x)
        mean, log_scale, logits = self.mean(h), self.log_scale(h), self.spike_logits(h)
        gamma = torch.sigmoid(logits)
        slab = mean + torch.exp(log_scale) * torch.randn_like(mean)
        eta = torch.rand_like(mean)
        selection = torch.sigmoid(self.selection_sharpness * (eta + gamma - 1))
        return {
            "z": selection * slab,
            "qz_mean": gamma * mean,  # the posterior mean: the spike contributes zero
            "slab_mean": mean,
            "log_scale": log_scale,
            "spike_logits": logits,
        }

    def _kl(self, inference_outputs: dict) -> torch.Tensor:
        """Tonolini et al.: gamma * KL(slab) plus KL(Bernoulli(gamma) || Bernoulli(alpha))."""
        logits = inference_outputs["spike_logits"]
        gamma = torch.sigmoid(logits)
        # log-sigmoids instead of log(gamma), log(1 - gamma): finite for saturated logits
        log_gamma, log_not_gamma = F.logsigmoid(logits), F.logsigmoid(-logits)
        slab = _gaussian_kl(inference_outputs["slab_mean"], inference_outputs["log_scale"])
        spike = gamma * (log_gamma - np.log(self.prior_spike)) + (1 - gamma) * (
            log_not_gamma - np.log1p(-self.prior_spike)
        )
        return (gamma * slab + spike).sum(-1)


class _SeedModel(UnsupervisedTrainingMixin, BaseModelClass):
    """Registration, the report's training defaults and the latent means."""

    @classmethod
    def setup_anndata(cls, adata: AnnData, layer: str | None = None, **kwargs) -> None:
        """Register an AnnData with the model class.

        Parameters
        ----------
        adata
            AnnData with log-normalised or scaled values, cells in rows.
        layer
            Layer holding the data; ``None`` uses ``adata.X``.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        fields = [LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False)]
        adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        adata_manager.register_fields(adata, **kwargs)
        cls.register_manager(adata_manager)

    def train(
        self,
        max_epochs: int | None = None,
        batch_size: int = BATCH_SIZE,
        train_size: float = TRAIN_SIZE,
        plan_kwargs: dict | None = None,
        **kwargs,
    ):
        """Train with the report's settings unless told otherwise.

        Parameters
        ----------
        max_epochs
            Number of passes through the data.
        batch_size
            Cells per minibatch.
        train_size
            Share of the cells used for training; the rest validates.
        plan_kwargs
            Passed to the training plan, over plain Adam at the report's learning rate.
        **kwargs
            Passed to :meth:`scvi.model.base.UnsupervisedTrainingMixin.train`.
        """
        plan_kwargs = {
            "lr": LEARNING_RATE,
            "weight_decay": 0.0,
            "eps": ADAM_EPS,
            **(plan_kwargs or {}),
        }
        return super().train(
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_size=train_size,
            plan_kwargs=plan_kwargs,
            **kwargs,
        )

    @torch.inference_mode()
    def get_latent_representation(
        self, adata: AnnData | None = None, batch_size: int | None = None
    ) -> np.ndarray:
        """Latent mean of each cell (the code itself for the autoencoder).

        Parameters
        ----------
        adata
            AnnData registered like the training data; ``None`` uses it.
        batch_size
            Cells per minibatch; ``None`` uses scvi-tools' default.

        Returns
        -------
        Array of shape (cells, latent dimensions).
        """
        adata = self._validate_anndata(adata)
        self.module.eval()
        means = [
            self.module.inference(**self.module._get_inference_input(tensors))["qz_mean"].cpu()
            for tensors in self._make_data_loader(adata=adata, batch_size=batch_size)
        ]
        return torch.cat(means).numpy()


class AE(_SeedModel):
    """Deep autoencoder of the report, trained on the summed squared error.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Dimension of the code.
    relu_code
        Apply a ReLU to the code (the report's equations) or leave it linear.
    """

    def __init__(self, adata: AnnData, n_latent: int = N_LATENT, relu_code: bool = True):
        super().__init__(adata)
        self.module = AEModule(self.summary_stats.n_vars, n_latent=n_latent, relu_code=relu_code)
        self._model_summary_string = (
            f"Seed-report autoencoder, n_latent: {n_latent}, relu_code: {relu_code}"
        )
        self.init_params_ = self._get_init_params(locals())


class BetaVAE(_SeedModel):
    """beta-VAE of the report: squared error plus ``beta`` times the Gaussian KL.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Dimension of the latent space.
    beta
        Weight of the KL term.
    """

    def __init__(self, adata: AnnData, n_latent: int = N_LATENT, beta: float = BETA):
        super().__init__(adata)
        self.module = BetaVAEModule(self.summary_stats.n_vars, n_latent=n_latent, beta=beta)
        self._model_summary_string = f"Seed-report beta-VAE, n_latent: {n_latent}, beta: {beta}"
        self.init_params_ = self._get_init_params(locals())


class BetaVSC(_SeedModel):
    """beta-VSC of the report: squared error plus ``beta`` times the spike-and-slab KL.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Dimension of the latent space.
    beta
        Weight of the KL term.
    prior_spike
        Prior probability ``alpha`` that a latent dimension is active.
    selection_sharpness
        ``c`` of the relaxed selection.
    """

    def __init__(
        self,
        adata: AnnData,
        n_latent: int = N_LATENT,
        beta: float = BETA,
        prior_spike: float = PRIOR_SPIKE,
        selection_sharpness: float = SELECTION_SHARPNESS,
    ):
        super().__init__(adata)
        self.module = BetaVSCModule(
            self.summary_stats.n_vars,
            n_latent=n_latent,
            beta=beta,
            prior_spike=prior_spike,
            selection_sharpness=selection_sharpness,
        )
        self._model_summary_string = (
            f"Seed-report beta-VSC, n_latent: {n_latent}, beta: {beta}, alpha: {prior_spike}"
        )
        self.init_params_ = self._get_init_params(locals())


SEED_MODELS = {"AE": AE, "beta-VAE": BetaVAE, "beta-VSC": BetaVSC}


def seed_model_clusters(
    name: str,
    adata: AnnData,
    n_clusters: int,
    seed: int,
    max_epochs: int,
    likelihood: Literal["nb", "normal"],
) -> np.ndarray:
    """Train one seed-report model and cluster its latent means with k-means.

    Parameters
    ----------
    name
        ``"AE"``, ``"beta-VAE"`` or ``"beta-VSC"``.
    adata
        Cells to cluster; not modified.
    n_clusters
        Number of k-means clusters.
    seed
        Seed of scvi-tools (weights, minibatches, samples) and of k-means.
    max_epochs
        Training epochs.
    likelihood
        ``"nb"`` when ``adata`` holds counts, which are log1p(CP10k)-normalised first as in
        the report; ``"normal"`` when it holds normalised or scaled values, used as they are.

    Returns
    -------
    Cluster id of each cell.
    """
    if name not in SEED_MODELS:
        raise ValueError(f"name must be one of {sorted(SEED_MODELS)}, got {name!r}")
    if likelihood not in ("nb", "normal"):
        raise ValueError(f"likelihood must be 'nb' or 'normal', got {likelihood!r}")
    # the report's models reconstruct log-normalised values with a squared error, not counts
    work = (scgmvae.tl.log_normalize(adata) if likelihood == "nb" else adata).copy()
    scvi.settings.seed = seed
    model_cls = SEED_MODELS[name]
    model_cls.setup_anndata(work)
    model = model_cls(work)
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    latent = model.get_latent_representation()
    kmeans = KMeans(n_clusters=n_clusters, random_state=seed, n_init=KMEANS_INITS)
    return kmeans.fit_predict(latent)
