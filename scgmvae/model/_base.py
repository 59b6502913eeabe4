"""Shared model class of GMVAE and CGMVAE."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

# scvi-tools 1.4 prints setups with rich.pretty without importing it (1.5 does)
import rich.pretty  # noqa: F401
import torch
from scvi import REGISTRY_KEYS
from scvi.data._constants import _SETUP_ARGS_KEY
from scvi.model.base import BaseModelClass

from scgmvae import _validation
from scgmvae.module import GMVAEModule
from scgmvae.module._constants import CONDITION_KEY, Dispersion, GeneLikelihood, WPrior
from scgmvae.train import GMVAEDataSplitter, GMVAETrainingPlan

from .base import ExpressionMixin, GenerationMixin, GMVAETrainingMixin, LatentMixin
from .base._generation_mixin import log_library_stats

if TYPE_CHECKING:
    from anndata import AnnData

DEFAULT_N_COMPONENTS = 10
"""Mixture components of a model without labels, unless ``n_components`` is given."""
MODEL_FILE = "model.pt"
"""Name of the weights file in a saved model's folder (scvi-tools' layout)."""


class _Unsupported:
    """Hides an inherited scvi-tools method the GMVAE models do not support.

    Looking it up raises :class:`AttributeError`, so ``hasattr`` is false and the API pages
    do not list it.
    """

    def __init__(self, reason: str):
        self.reason = reason

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, instance, owner=None):
        raise AttributeError(f"{owner.__name__}.{self.name} is not supported: {self.reason}")


class BaseGMVAE(GMVAETrainingMixin, LatentMixin, GenerationMixin, ExpressionMixin, BaseModelClass):
    """Model logic shared by :class:`~scgmvae.model.GMVAE` and :class:`~scgmvae.model.CGMVAE`."""

    _module_cls = GMVAEModule
    _training_plan_cls = GMVAETrainingPlan
    _data_splitter_cls = GMVAEDataSplitter

    prepare_query_mudata = _Unsupported("the models are set up with AnnData, not MuData.")
    setup_annbatch = _Unsupported("use setup_anndata (streaming from backed AnnData works).")

    def __init__(
        self,
        adata: AnnData | None = None,
        n_components: int | None = None,
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
        **module_kwargs,
    ):
        super().__init__(adata)
        layer = self.adata_manager.registry[_SETUP_ARGS_KEY].get("layer")
        _validation.check_values(self.adata, layer, gene_likelihood)

        n_labels = len(self.label_names)
        if n_components is None:
            n_components = n_labels if n_labels > 0 else DEFAULT_N_COMPONENTS
        n_conditions = len(self.condition_names)
        library_log_means, library_log_vars = self._library_size_stats(layer)
        cat_covs = self.adata_manager.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY)
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_components=n_components,
            n_labels=n_labels,
            n_conditions=n_conditions,
            n_batch=self.summary_stats.n_batch,
            n_cats_per_cov=cat_covs.get("n_cats_per_key"),
            n_continuous_cov=self.summary_stats.get("n_extra_continuous_covs", 0),
            n_latent=n_latent,
            n_latent_w=n_latent_w,
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            gene_likelihood=gene_likelihood,
            dispersion=dispersion,
            w_prior=w_prior,
            dirichlet_alpha=dirichlet_alpha,
            classification_weight=classification_weight,
            library_log_means=library_log_means,
            library_log_vars=library_log_vars,
            **module_kwargs,
        )
        self._model_summary_string = (
            f"{type(self).__name__}: {n_components} components ({n_labels} labelled"
            f"{f', {n_conditions} conditions' if n_conditions else ''}"
            f"{f', {len(self.batch_names)} batches' if len(self.batch_names) > 1 else ''}), "
            f"n_latent: {n_latent}, n_latent_w: {n_latent_w}, n_hidden: {n_hidden}, "
            f"n_layers: {n_layers}, gene_likelihood: {gene_likelihood}, "
            f"{f'dispersion: {dispersion}, ' if dispersion != 'gene' else ''}w_prior: {w_prior}, "
            f"dirichlet_alpha: {dirichlet_alpha}"
        )
        self.init_params_ = self._get_init_params(locals())

    # -- registered categories -------------------------------------------------------------

    @property
    def label_names(self) -> list[str]:
        """The known cell-type labels; label ``i`` is mixture component ``i``."""
        setup_args = self.adata_manager.registry[_SETUP_ARGS_KEY]
        if setup_args.get("labels_key") is None:
            return []
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
        unlabeled = setup_args.get("unlabeled_category")
        return [str(c) for c in state.categorical_mapping if c != unlabeled]

    @property
    def condition_names(self) -> list[str]:
        """The registered conditions (empty for the unconditional model)."""
        if CONDITION_KEY not in self.adata_manager.data_registry:
            return []
        state = self.adata_manager.get_state_registry(CONDITION_KEY)
        return [str(c) for c in state.categorical_mapping]

    @property
    def batch_names(self) -> list[str]:
        """The registered batches (one unnamed batch without ``batch_key``)."""
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY)
        return [str(c) for c in state.categorical_mapping]

    def _batch_code(self, batch: str | int | None) -> int | None:
        """Registered code of ``batch``; ``None`` stays ``None`` (with one batch too)."""
        names = self.batch_names
        if batch is None:
            return 0 if len(names) > 1 else None
        if isinstance(batch, int | np.integer) and 0 <= batch < len(names):
            return int(batch)
        if str(batch) not in names:
            raise ValueError(
                f"Batch {batch!r} was not registered; choose among {names}, or map new batches "
                f"with {type(self).__name__}.load_query_data."
            )
        return names.index(str(batch))

    def _library_size_stats(self, layer: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the log library size per condition (for generating cells)."""
        matrix = self.adata.X if layer is None else self.adata.layers[layer]
        log_lib = np.log(np.clip(_validation.row_sums(matrix), 1.0, None))
        n_conditions = max(len(self.condition_names), 1)
        if n_conditions == 1:
            codes = np.zeros(self.adata.n_obs, dtype=int)
        else:
            codes = self.get_from_registry(self.adata, CONDITION_KEY).ravel().astype(int)
        means, variances, _ = log_library_stats(log_lib, codes, n_conditions)
        return torch.from_numpy(means), torch.from_numpy(variances)

    # -- saving and loading ---------------------------------------------------------------

    @classmethod
    def load(
        cls,
        dir_path: str | os.PathLike,
        adata: AnnData | None = None,
        prefix: str | None = None,
        backup_url: str | None = None,
        **kwargs,
    ):
        """Load a model saved with :meth:`save`.

        scvi-tools' :meth:`~scvi.model.base.BaseModelClass.load`, which reads the file with
        ``torch.load(weights_only=False)``: the file is a pickle, and loading it can run code
        stored in it. Load only models you saved yourself or got from a source you trust.

        Parameters
        ----------
        dir_path
            Folder the model was saved to.
        adata
            Data set up like the training data (the registered genes and ``obs`` columns);
            `None` loads the AnnData saved with the model (``save(save_anndata=True)``).
        prefix
            Prefix of the saved file names.
        backup_url
            URL to download the saved model file from when it is not in ``dir_path``.
        **kwargs
            Passed to :meth:`~scvi.model.base.BaseModelClass.load` (``accelerator``,
            ``device``).

        Returns
        -------
        The model with its trained weights.

        Raises
        ------
        FileNotFoundError
            If ``dir_path`` holds no saved model and no ``backup_url`` is given.
        """
        model_file = Path(dir_path) / f"{prefix or ''}{MODEL_FILE}"
        if backup_url is None and not model_file.is_file():
            missing = f"has no {model_file.name}" if Path(dir_path).is_dir() else "does not exist"
            raise FileNotFoundError(
                f"No saved model in {dir_path}: the folder {missing}. Pass the folder given to "
                f"model.save(...) (and its prefix, if one was used)."
            )
        return super().load(dir_path, adata=adata, prefix=prefix, backup_url=backup_url, **kwargs)

    # -- scvi-tools 1.4's registry helpers read a registry attribute models do not have ------

    def view_registry(self, hide_state_registries: bool = False) -> None:
        """Print the setup arguments, summary statistics and fields of the registry.

        Parameters
        ----------
        hide_state_registries
            Leave out the details of each field's state registry.
        """
        self.adata_manager.view_registry(hide_state_registries=hide_state_registries)

    def update_setup_method_args(self, setup_method_args: dict) -> None:
        """Update the registered setup arguments with ``setup_method_args``.

        Parameters
        ----------
        setup_method_args
            Keyword arguments of ``setup_anndata`` to record in the registry.
        """
        self.registry_[_SETUP_ARGS_KEY].update(setup_method_args)

    # -- new data --------------------------------------------------------------------------

    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = True):
        """Check new cells against the registry; new cells need no labels column.

        Unknown conditions, batches or covariate categories raise an error that points to
        ``load_query_data``; labels the model never saw (or no labels column) make the cells
        unlabelled, on a light copy that leaves the user's ``obs`` alone.
        """
        if adata is not None and adata is not self.adata:
            _validation.check_not_empty(adata)
            registered = self.adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY).column_names
            _validation.check_var_names(adata, registered)
            setup_args = self.adata_manager.registry[_SETUP_ARGS_KEY]
            _validation.check_values(adata, setup_args.get("layer"), self.module.gene_likelihood)
            self._check_known_categories(adata, setup_args)
            adata = self._with_known_labels(adata, setup_args)
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    def _check_known_categories(self, adata: AnnData, setup_args: dict) -> None:
        registered = {
            "Condition": (setup_args.get("condition_key"), CONDITION_KEY),
            "Batch": (setup_args.get("batch_key"), REGISTRY_KEYS.BATCH_KEY),
        }
        for i, key in enumerate(setup_args.get("categorical_covariate_keys") or []):
            registered[f"Covariate {key!r}"] = (key, (REGISTRY_KEYS.CAT_COVS_KEY, i))
        for what, (key, registry_key) in registered.items():
            if key is None:
                continue
            _validation.check_obs_key(adata, key, what)
            known = self._registered_categories(registry_key)
            unseen = sorted(set(adata.obs[key].astype(str)) - {str(c) for c in known})
            if unseen:
                raise ValueError(
                    f"{what} column {key!r} has categories the model was not trained on: "
                    f"{unseen[:5]} (known: {[str(c) for c in known]}). Map new donors, samples "
                    f"or conditions with {type(self).__name__}.load_query_data(adata, model) "
                    "and train the query model, or subset to the known categories."
                )

    def _registered_categories(self, registry_key) -> list:
        if isinstance(registry_key, tuple):
            key, position = registry_key
            state = self.adata_manager.get_state_registry(key)
            return list(state.mappings[state.field_keys[position]])
        return list(self.adata_manager.get_state_registry(registry_key).categorical_mapping)

    def _with_known_labels(self, adata: AnnData, setup_args: dict) -> AnnData:
        """``adata``, or a copy sharing its matrices whose unknown labels are unlabelled."""
        import anndata

        labels_key = setup_args.get("labels_key")
        if labels_key is None:
            return adata
        unlabeled = setup_args["unlabeled_category"]
        known = set(self.label_names) | {unlabeled}
        if labels_key in adata.obs and set(adata.obs[labels_key].astype(str)) <= known:
            return adata
        obs = adata.obs.copy()
        if labels_key in obs:
            is_known = obs[labels_key].astype(str).isin(known)
            obs[labels_key] = obs[labels_key].astype(str).where(is_known, unlabeled)
        else:
            obs[labels_key] = unlabeled
        # shares X and the layers with the user's AnnData: no copy of the data
        return anndata.AnnData(X=adata.X, obs=obs, var=adata.var, layers=dict(adata.layers))
