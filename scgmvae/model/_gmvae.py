"""The unconditional Gaussian-mixture VAE."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import CategoricalObsField, LabelsWithUnlabeledObsField, LayerField

from scgmvae import _validation
from scgmvae.model._base import BaseGMVAE
from scgmvae.module._gmvae import CONDITION_KEY

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)


def _register(
    cls,
    adata: AnnData,
    setup_method_args: dict,
    layer: str | None,
    labels_key: str | None,
    unlabeled_category: str,
    condition_key: str | None = None,
    **kwargs,
) -> None:
    """Validate the keys, then register the fields of a GMVAE-family model."""
    _validation.check_not_empty(adata)
    # NaN/inf and dtype here; the model checks the rest against its likelihood
    _validation.check_values(adata, layer, "normal")
    _validation.check_obs_key(adata, labels_key, "Labels")
    _validation.check_obs_key(adata, condition_key, "Condition")
    _validation.check_categories_have_cells(adata, labels_key, "Labels", [unlabeled_category])
    _validation.check_categories_have_cells(adata, condition_key, "Condition")
    fields = [
        LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False),
        # without labels every cell is unlabelled: one dummy category, no labelled component
        LabelsWithUnlabeledObsField(REGISTRY_KEYS.LABELS_KEY, labels_key, unlabeled_category)
        if labels_key is not None
        else CategoricalObsField(REGISTRY_KEYS.LABELS_KEY, None),
    ]
    if condition_key is not None:
        fields.append(CategoricalObsField(CONDITION_KEY, condition_key))
    adata_manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
    adata_manager.register_fields(adata, **kwargs)
    cls.register_manager(adata_manager)


class GMVAE(BaseGMVAE):
    """Gaussian-mixture variational autoencoder with a Dirichlet prior (thesis ch. 5).

    Cells are embedded in ``z``, a Gaussian mixture with ``n_components`` components whose
    means and variances are decoded from a second latent ``w``; a Dirichlet prior on the
    mixture weights lets the classifier ``q(y|z)`` be confident. Trains unsupervised,
    supervised or semi-supervised depending on the labels registered with
    :meth:`setup_anndata`.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_components
        Number of mixture components; by default the number of labels, or 10 without labels.
        More components than labels over-cluster.
    n_latent
        Dimension of the mixture latent ``z``.
    n_latent_w
        Dimension of ``w``.
    n_hidden
        Width of the hidden layers.
    n_layers
        Number of hidden layers of the encoder and decoder of ``x``.
    dropout_rate
        Dropout rate of the encoder.
    gene_likelihood
        ``"nb"`` (raw counts), ``"zinb"``, ``"poisson"``, ``"normal"`` (normalised or scaled
        data, the thesis' choice) or ``"bernoulli"`` (values in [0, 1]).
    w_prior
        ``"fixed"`` standard normal or ``"learned"`` Gaussian prior on ``w``.
    dirichlet_alpha
        Concentration of the symmetric Dirichlet prior on the mixture weights.
    classification_weight
        Weight of the classification term ``-log q(y|z)`` of labelled cells.
    **module_kwargs
        Passed to :class:`~scgmvae.module.GMVAEModule`.

    Examples
    --------
    >>> import scgmvae
    >>> adata = scgmvae.datasets.toy_blobs(counts=True)
    >>> scgmvae.model.GMVAE.setup_anndata(adata)
    >>> model = scgmvae.model.GMVAE(adata, n_components=5)
    >>> model.train(max_epochs=50)
    >>> adata.obsm["X_scgmvae_z"] = model.get_latent_representation()
    >>> adata.obs["component"] = model.predict()
    """

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        labels_key: str | None = None,
        unlabeled_category: str = "Unknown",
        **kwargs,
    ) -> None:
        """Register an AnnData with the model class.

        Parameters
        ----------
        adata
            AnnData with cells in rows; raw counts for the count likelihoods.
        layer
            Layer holding the data; ``None`` uses ``adata.X``.
        labels_key
            Column of ``adata.obs`` with cell-type labels, for supervised or semi-supervised
            training; cells labelled ``unlabeled_category`` are treated as unlabelled.
        unlabeled_category
            Label value of unlabelled cells.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        _register(cls, adata, setup_method_args, layer, labels_key, unlabeled_category, **kwargs)
