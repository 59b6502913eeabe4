"""The conditional Gaussian-mixture VAE."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from scgmvae.model._base import BaseGMVAE
from scgmvae.model._gmvae import _register

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)


class CGMVAE(BaseGMVAE):
    """Conditional Gaussian-mixture VAE (thesis §5.6).

    The :class:`~scgmvae.model.GMVAE` with an observed condition (e.g. control/stimulated)
    fed as a one-hot vector to every sub-network. With the default fixed prior on ``w`` the
    condition is removed from ``w`` and the decoder puts it back, so cells can be decoded
    under another condition (:meth:`predict_perturbation`).

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
        ``"fixed"`` standard normal prior on ``w``, or ``"learned"``: a Gaussian per condition.
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
    >>> scgmvae.model.CGMVAE.setup_anndata(adata, condition_key="condition")
    >>> model = scgmvae.model.CGMVAE(adata, n_components=5)
    >>> model.train(max_epochs=50)
    """

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        layer: str | None = None,
        condition_key: str = "condition",
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
        condition_key
            Column of ``adata.obs`` with the condition of each cell (e.g. control/stimulated).
        labels_key
            Column of ``adata.obs`` with cell-type labels, for supervised or semi-supervised
            training; cells labelled ``unlabeled_category`` are treated as unlabelled.
        unlabeled_category
            Label value of unlabelled cells.
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.
        """
        if condition_key is None:
            raise ValueError(
                "CGMVAE needs a condition_key; use scgmvae.model.GMVAE for data without "
                "conditions."
            )
        setup_method_args = cls._get_setup_method_args(**locals())
        _register(
            cls,
            adata,
            setup_method_args,
            layer,
            labels_key,
            unlabeled_category,
            condition_key=condition_key,
            **kwargs,
        )
