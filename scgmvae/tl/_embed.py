"""Write the model's latents and clusters into an AnnData, the way scanpy expects them."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from anndata import AnnData

    from scgmvae.model import BaseGMVAE

logger = logging.getLogger(__name__)

Z_KEY = "X_scgmvae_z"
W_KEY = "X_scgmvae_w"
COMPONENT_KEY = "scgmvae_component"
PREDICTION_KEY = "scgmvae_prediction"


def embed(model: BaseGMVAE, adata: AnnData | None = None, batch_size: int | None = None) -> None:
    """Store the latents and the predicted clusters of every cell in ``adata``.

    Writes ``obsm["X_scgmvae_z"]`` and ``obsm["X_scgmvae_w"]`` (posterior means),
    ``obs["scgmvae_component"]`` (most probable mixture component, categorical) and, when the
    model has labels, ``obs["scgmvae_prediction"]`` (predicted label). Afterwards
    ``sc.pp.neighbors(adata, use_rep="X_scgmvae_z")`` and ``sc.tl.umap(adata)`` work as usual.

    Parameters
    ----------
    model
        A trained :class:`~scgmvae.model.GMVAE` or :class:`~scgmvae.model.CGMVAE`.
    adata
        AnnData with the registered genes; defaults to the model's own.
    batch_size
        Minibatch size of the forward passes.
    """
    adata = model.adata if adata is None else adata
    adata.obsm[Z_KEY] = model.get_latent_representation(adata, batch_size=batch_size)
    adata.obsm[W_KEY] = model.get_latent_representation(
        adata, representation="w", batch_size=batch_size
    )
    probs = model.get_component_probabilities(adata, batch_size=batch_size)
    adata.obs[COMPONENT_KEY] = pd.Categorical(
        probs.argmax(1), categories=range(probs.shape[1])
    ).remove_unused_categories()
    if model.label_names:
        adata.obs[PREDICTION_KEY] = pd.Categorical(
            model.predict(adata, batch_size=batch_size), categories=model.label_names
        )
    logger.info(
        "Added obsm[%r], obsm[%r] and obs[%r] to the AnnData.", Z_KEY, W_KEY, COMPONENT_KEY
    )
