"""The unconditional Gaussian-mixture VAE."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import BaseGMVAE
from ._setup import document_setup_parameters, register_fields

if TYPE_CHECKING:
    from anndata import AnnData


class GMVAE(BaseGMVAE):
    """Gaussian-mixture variational autoencoder with a Dirichlet prior (thesis ch. 5).

    Cells are embedded in ``z``, a Gaussian mixture with ``n_components`` components whose
    means and variances are decoded from a second latent ``w``; a Dirichlet prior on the
    mixture weights lets the classifier ``q(y|z)`` be confident. Trains unsupervised,
    supervised or semi-supervised depending on the labels registered with
    :meth:`setup_anndata`. A batch key (donors, samples) and covariates enter the encoder and
    the decoder of ``x``, not the mixture, so components stay cell types across batches.

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
    dispersion
        Of the negative binomials (``"nb"``, ``"zinb"``): ``"gene"``, one per gene, or
        ``"gene-cell"``, decoded from the cell's ``z`` with its mean, so that each cell type
        and condition has its own spread; the benchmarks page compares the two on generated
        cells.
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
    >>> adata = scgmvae.datasets.kang_subset()
    >>> scgmvae.model.GMVAE.setup_anndata(adata, labels_key="cell_type")
    >>> model = scgmvae.model.GMVAE(adata)
    >>> model.train(max_epochs=50)
    >>> scgmvae.tl.embed(model, adata)  # obsm["X_scgmvae_z"], obs["scgmvae_component"]
    """

    @classmethod
    @document_setup_parameters
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        labels_key: str | None = None,
        unlabeled_category: str = "Unknown",
        batch_key: str | None = None,
        categorical_covariate_keys: list[str] | None = None,
        continuous_covariate_keys: list[str] | None = None,
        **kwargs,
    ) -> None:
        """Register an AnnData with the model class.

        Parameters
        ----------
        adata
            AnnData with cells in rows.
        {setup_parameters}
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        register_fields(
            cls,
            adata,
            setup_method_args,
            layer=layer,
            labels_key=labels_key,
            unlabeled_category=unlabeled_category,
            batch_key=batch_key,
            categorical_covariate_keys=categorical_covariate_keys,
            continuous_covariate_keys=continuous_covariate_keys,
            **kwargs,
        )
