"""Registering an AnnData with a GMVAE-family model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import (
    CategoricalJointObsField,
    CategoricalObsField,
    LabelsWithUnlabeledObsField,
    LayerField,
    NumericalJointObsField,
)

from scgmvae import _validation
from scgmvae.module._constants import CONDITION_KEY

if TYPE_CHECKING:
    from anndata import AnnData

_SETUP_PARAMETERS = """layer
            Layer holding the data; ``None`` uses ``adata.X``. Raw counts for the count
            likelihoods.
        labels_key
            Column of ``adata.obs`` with cell-type labels, for supervised or semi-supervised
            training; cells labelled ``unlabeled_category`` are treated as unlabelled.
        unlabeled_category
            Label value of unlabelled cells.
        batch_key
            Column of ``adata.obs`` with the batch (donor, sample, run) of each cell. The batch
            enters the encoder of ``z`` and ``w`` and the decoder of ``x``, not the mixture, so
            the components stay cell types across batches.
        categorical_covariate_keys
            Columns of ``adata.obs`` with further categorical covariates, used like the batch.
        continuous_covariate_keys
            Columns of ``adata.obs`` with continuous covariates (e.g. the percentage of
            mitochondrial counts), appended to the inputs of the encoder and of the decoder of
            ``x``.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`."""


def document_setup_parameters(method):
    """Fill ``{setup_parameters}`` in the docstring of a ``setup_anndata`` method."""
    method.__doc__ = method.__doc__.replace("{setup_parameters}", _SETUP_PARAMETERS)
    return method


def register_fields(
    cls,
    adata: AnnData,
    setup_method_args: dict,
    *,
    layer: str | None,
    labels_key: str | None,
    unlabeled_category: str,
    condition_key: str | None = None,
    batch_key: str | None = None,
    categorical_covariate_keys: list[str] | None = None,
    continuous_covariate_keys: list[str] | None = None,
    **kwargs,
) -> None:
    """Validate the keys, then register the fields of a GMVAE-family model."""
    _validation.check_not_empty(adata)
    # NaN/inf and dtype here; the model checks the rest against its likelihood
    _validation.check_values(adata, layer, "normal")
    _validation.check_labels_column(adata, labels_key, unlabeled_category)
    categorical = {"Condition": [condition_key], "Batch": [batch_key]}
    categorical["Categorical covariate"] = list(categorical_covariate_keys or [])
    for what, keys in categorical.items():
        for key in keys:
            _validation.check_categorical_column(adata, key, what)
    for key in continuous_covariate_keys or []:
        _validation.check_continuous_column(adata, key)

    fields = [
        LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
        # without labels every cell is unlabelled: one dummy category, no labelled component
        LabelsWithUnlabeledObsField(REGISTRY_KEYS.LABELS_KEY, labels_key, unlabeled_category)
        if labels_key is not None
        else CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, None),
        CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key),
        CategoricalJointObsField(REGISTRY_KEYS.CAT_COVS_KEY, categorical_covariate_keys),
        NumericalJointObsField(REGISTRY_KEYS.CONT_COVS_KEY, continuous_covariate_keys),
    ]
    if condition_key is not None:
        fields.append(CategoricalObsField(CONDITION_KEY, condition_key))
    adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
    adata_manager.register_fields(adata, **kwargs)
    cls.register_manager(adata_manager)
