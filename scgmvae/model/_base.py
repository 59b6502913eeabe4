"""Shared model class of GMVAE and CGMVAE."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS
from scvi.data._constants import _SETUP_ARGS_KEY
from scvi.model.base import ArchesMixin, BaseModelClass, UnsupervisedTrainingMixin, VAEMixin

from scgmvae import _validation
from scgmvae.module import GMVAEModule
from scgmvae.module._gmvae import CONDITION_KEY, QW_KEY

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

DEFAULT_N_COMPONENTS = 10
DEFAULT_KL_WARMUP_FRACTION = 0.25
"""KL warm-up lasts this fraction of ``max_epochs`` unless ``plan_kwargs`` say otherwise."""


class BaseGMVAE(VAEMixin, UnsupervisedTrainingMixin, ArchesMixin, BaseModelClass):
    """Model logic shared by :class:`~scgmvae.model.GMVAE` and :class:`~scgmvae.model.CGMVAE`."""

    _module_cls = GMVAEModule

    def __init__(
        self,
        adata: AnnData | None = None,
        n_components: int | None = None,
        n_latent: int = 10,
        n_latent_w: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        gene_likelihood: Literal["nb", "zinb", "poisson", "normal", "bernoulli"] = "nb",
        w_prior: Literal["fixed", "learned"] = "fixed",
        dirichlet_alpha: float = 1.0,
        classification_weight: float = 10.0,
        **module_kwargs,
    ):
        super().__init__(adata)
        layer = self.adata_manager.registry[_SETUP_ARGS_KEY].get("layer")
        _validation.check_values(self.adata, layer, gene_likelihood)

        n_labels = len(self.label_names_)
        if n_components is None:
            n_components = n_labels if n_labels > 0 else DEFAULT_N_COMPONENTS
        if n_components < n_labels:
            raise ValueError(
                f"n_components={n_components} is smaller than the number of labels "
                f"({n_labels}: {self.label_names_}); use n_components >= {n_labels} (larger "
                "values over-cluster: the extra components are learned unsupervised)."
            )
        n_conditions = len(self.condition_names_)
        library_log_means, library_log_vars = self._library_size_stats(layer)
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_components=n_components,
            n_labels=n_labels,
            n_conditions=n_conditions,
            n_latent=n_latent,
            n_latent_w=n_latent_w,
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            gene_likelihood=gene_likelihood,
            w_prior=w_prior,
            dirichlet_alpha=dirichlet_alpha,
            classification_weight=classification_weight,
            library_log_means=library_log_means,
            library_log_vars=library_log_vars,
            **module_kwargs,
        )
        self._model_summary_string = (
            f"{type(self).__name__}: {n_components} components ({n_labels} labelled"
            f"{', ' + str(n_conditions) + ' conditions' if n_conditions else ''}), "
            f"n_latent: {n_latent}, n_latent_w: {n_latent_w}, n_hidden: {n_hidden}, "
            f"n_layers: {n_layers}, gene_likelihood: {gene_likelihood}, w_prior: {w_prior}, "
            f"dirichlet_alpha: {dirichlet_alpha}"
        )
        self.init_params_ = self._get_init_params(locals())

    # -- registered categories -------------------------------------------------------------

    @property
    def label_names_(self) -> list[str]:
        """The known cell-type labels; label ``i`` is mixture component ``i``."""
        setup_args = self.adata_manager.registry[_SETUP_ARGS_KEY]
        if setup_args.get("labels_key") is None:
            return []
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
        unlabeled = setup_args.get("unlabeled_category")
        return [str(c) for c in state.categorical_mapping if c != unlabeled]

    @property
    def condition_names_(self) -> list[str]:
        """The registered conditions (empty for the unconditional model)."""
        if CONDITION_KEY not in self.adata_manager.data_registry:
            return []
        state = self.adata_manager.get_state_registry(CONDITION_KEY)
        return [str(c) for c in state.categorical_mapping]

    def _library_size_stats(self, layer: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the log library size per condition (for generating cells)."""
        matrix = self.adata.X if layer is None else self.adata.layers[layer]
        totals = np.asarray(matrix.sum(axis=1)).ravel()
        log_lib = np.log(np.clip(totals, 1.0, None))
        n_conditions = max(len(self.condition_names_), 1)
        if n_conditions == 1:
            codes = np.zeros(self.adata.n_obs, dtype=int)
        else:
            codes = self.get_from_registry(self.adata, CONDITION_KEY).ravel().astype(int)
        means = np.zeros(n_conditions, dtype=np.float32)
        variances = np.ones(n_conditions, dtype=np.float32)
        for c in range(n_conditions):
            values = log_lib[codes == c]
            if values.size:
                means[c] = values.mean()
                variances[c] = max(values.var(), 1e-4)
        return torch.from_numpy(means), torch.from_numpy(variances)

    # -- validation ------------------------------------------------------------------------

    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = True):
        if adata is not None and adata is not self.adata:
            _validation.check_not_empty(adata)
            registered = self.adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY).column_names
            _validation.check_var_names(adata, registered)
            setup_args = self.adata_manager.registry[_SETUP_ARGS_KEY]
            for key, what in (
                (setup_args.get("condition_key"), "Condition"),
                (setup_args.get("labels_key"), "Labels"),
            ):
                _validation.check_obs_key(adata, key, what)
            _validation.check_values(
                adata, setup_args.get("layer"), self.module.gene_likelihood
            )
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    # -- training --------------------------------------------------------------------------

    def train(
        self,
        max_epochs: int | None = None,
        plan_kwargs: dict | None = None,
        **kwargs,
    ):
        """Train the model on the scvi-tools trainer.

        Unlabelled cells get the unsupervised loss and labelled cells the supervised one, in the
        same minibatches, so this one call trains unsupervised, supervised or semi-supervised
        models depending on what was registered with ``setup_anndata``.

        Parameters
        ----------
        max_epochs
            Number of passes through the data; by default scvi-tools' heuristic (400 epochs
            for up to 20,000 cells, fewer beyond).
        plan_kwargs
            Keyword arguments for :class:`~scvi.train.TrainingPlan` (``lr``,
            ``n_epochs_kl_warmup``, ...). KL warm-up defaults to a quarter of ``max_epochs``.
        **kwargs
            Passed to :meth:`scvi.model.base.UnsupervisedTrainingMixin.train` (``batch_size``,
            ``early_stopping``, ``train_size``, ``accelerator``, ``devices``, trainer options).
        """
        from scvi.model._utils import get_max_epochs_heuristic

        if max_epochs is None:
            max_epochs = get_max_epochs_heuristic(self.adata.n_obs)
        plan_kwargs = dict(plan_kwargs or {})
        if "n_steps_kl_warmup" not in plan_kwargs:
            plan_kwargs.setdefault(
                "n_epochs_kl_warmup", max(1, int(DEFAULT_KL_WARMUP_FRACTION * max_epochs))
            )
        kwargs.setdefault("gradient_clip_val", 10.0)
        return super().train(max_epochs=max_epochs, plan_kwargs=plan_kwargs, **kwargs)

    # -- inference -------------------------------------------------------------------------

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        give_mean: bool = True,
        batch_size: int | None = None,
        representation: Literal["z", "w"] = "z",
        return_dist: bool = False,
        **kwargs,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The latent representation of each cell in ``z`` (the mixture space) or ``w``.

        Parameters
        ----------
        adata
            AnnData with the registered genes; defaults to the one the model was set up with.
        indices
            Cells of ``adata`` to use; all by default.
        give_mean
            Return the posterior mean rather than a sample.
        batch_size
            Minibatch size of the forward passes.
        representation
            ``"z"``: the Gaussian-mixture latent; ``"w"``: the latent that generates the mixture.
        return_dist
            Return the posterior means and variances.
        **kwargs
            Passed to :meth:`scvi.model.base.VAEMixin.get_latent_representation` for ``"z"``.

        Returns
        -------
        Array of shape ``(n_cells, n_latent)`` (or ``n_latent_w``), or the tuple
        ``(means, variances)`` when ``return_dist`` is set.
        """
        if representation == "z":
            return super().get_latent_representation(
                adata=adata,
                indices=indices,
                give_mean=give_mean,
                batch_size=batch_size,
                return_dist=return_dist,
                **kwargs,
            )
        if representation != "w":
            raise ValueError(f"representation must be 'z' or 'w', got {representation!r}.")
        self._check_if_trained(warn=False)
        adata = self._validate_anndata(adata)
        means, variances = [], []
        for tensors in self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size):
            qw = self.module.inference(**self.module._get_inference_input(tensors))[QW_KEY]
            means.append(qw.loc.cpu())
            variances.append(qw.scale.square().cpu() if return_dist or not give_mean else None)
        mean = torch.cat(means).numpy()
        if return_dist:
            return mean, torch.cat(variances).numpy()
        if give_mean:
            return mean
        std = np.sqrt(torch.cat(variances).numpy())
        return mean + std * np.random.default_rng().standard_normal(mean.shape, dtype=np.float32)

    @torch.inference_mode()
    def get_component_probabilities(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """``q(y|z,c)`` at the posterior mean of ``z``: shape ``(n_cells, n_components)``."""
        self._check_if_trained(warn=False)
        adata = self._validate_anndata(adata)
        probs = []
        for tensors in self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size):
            inputs = self.module._get_inference_input(tensors)
            qz = self.module.inference(**inputs)["qz"]
            probs.append(self.module.component_probs(qz.loc, inputs["condition"]).cpu())
        return torch.cat(probs).numpy()

    def predict(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        soft: bool = False,
        return_components: bool = False,
        batch_size: int | None = None,
    ) -> np.ndarray | pd.DataFrame:
        """Predict the cell type (or the mixture component) of each cell.

        With registered labels the prediction is the most probable labelled component
        (components beyond the labels, from over-clustering, are left out and the
        probabilities renormalised); without labels, or with ``return_components``, it is the
        most probable component.

        Parameters
        ----------
        adata
            AnnData with the registered genes; defaults to the one the model was set up with.
        indices
            Cells of ``adata`` to use; all by default.
        soft
            Return probabilities instead of the most probable class.
        return_components
            Predict mixture components even when labels are registered.
        batch_size
            Minibatch size of the forward passes.

        Returns
        -------
        An array of label names (or integer component ids), or with ``soft`` a DataFrame of
        probabilities with one row per cell (index ``obs_names``) and one column per class.
        """
        probs = self.get_component_probabilities(adata, indices, batch_size)
        labels = self.label_names_
        if labels and not return_components:
            probs = probs[:, : len(labels)]
            probs = probs / probs.sum(1, keepdims=True)
            columns: list = labels
        else:
            columns = list(range(probs.shape[1]))
        if soft:
            obs_names = (adata if adata is not None else self.adata).obs_names
            if indices is not None:
                obs_names = obs_names[np.asarray(indices)]
            return pd.DataFrame(probs, index=obs_names, columns=columns)
        best = probs.argmax(1)
        return np.asarray(columns, dtype=object)[best] if columns is labels else best
