"""Leiden-guided training (thesis §5.5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData

    from scgmvae.model import BaseGMVAE


def leiden_clusters(
    adata: AnnData,
    resolution: float = 1.0,
    layer: str | None = None,
    n_top_genes: int | None = 2000,
    use_rep: str | None = None,
    seed: int = 0,
) -> pd.Series:
    """Leiden clusters of the cells, computed on a copy of ``adata``.

    By default on the PCA of log-normalised data (scanpy's defaults); with ``use_rep`` on an
    embedding in ``adata.obsm``, e.g. the ``z`` of a first model (``"X_scgmvae_z"`` after
    :func:`scgmvae.tl.embed`).

    Parameters
    ----------
    adata
        Cells; counts are normalised to log1p(CP10k) first, other data are used as they are.
    resolution
        Leiden resolution.
    layer
        Layer holding the data; ``None`` uses ``adata.X``.
    n_top_genes
        Highly variable genes for the PCA (``None``: all genes).
    use_rep
        Key of an embedding in ``adata.obsm`` to build the neighbour graph on instead of the
        PCA; ``layer`` and ``n_top_genes`` are then unused.
    seed
        Random state of the PCA, the neighbour graph and Leiden.

    Returns
    -------
    A categorical Series of cluster names indexed by ``obs_names``.
    """
    import anndata
    import scanpy as sc

    from scgmvae._neighbors import neighbors
    from scgmvae.tl._expression import log_normalize

    if use_rep is not None:
        if use_rep not in adata.obsm:
            raise KeyError(
                f"use_rep={use_rep!r} is not in adata.obsm (keys: {list(adata.obsm)}); "
                "scgmvae.tl.embed(model, adata) writes 'X_scgmvae_z'."
            )
        work = anndata.AnnData(obs=adata.obs[[]].copy(), obsm={use_rep: adata.obsm[use_rep]})
        neighbors(work, use_rep=use_rep, random_state=seed)
    else:
        work = anndata.AnnData(
            X=adata.X if layer is None else adata.layers[layer],
            obs=adata.obs[[]].copy(),
            var=adata.var[[]].copy(),
        )
        work = log_normalize(work).copy()
        if n_top_genes is not None and work.n_vars > n_top_genes:
            sc.pp.highly_variable_genes(work, n_top_genes=n_top_genes, subset=True)
        sc.pp.pca(work, n_comps=min(50, work.n_vars - 1, work.n_obs - 1), random_state=seed)
        neighbors(work, random_state=seed)
    sc.tl.leiden(
        work,
        resolution=resolution,
        random_state=seed,
        flavor="igraph",
        n_iterations=2,
        directed=False,
    )
    return work.obs["leiden"]


def leiden_guided_train(
    model: BaseGMVAE,
    supervised_epochs: int = 100,
    unsupervised_epochs: int = 0,
    **train_kwargs,
) -> BaseGMVAE:
    """Train on cluster labels, then optionally go on unsupervised (thesis §5.5).

    Set the model up with Leiden clusters as its labels (see :func:`leiden_clusters`), e.g.
    ``adata.obs["leiden"] = scgmvae.tl.leiden_clusters(adata)`` then
    ``GMVAE.setup_anndata(adata, labels_key="leiden")``. The model first learns one
    component per cluster with the supervised loss; the unsupervised phase then lets cells
    move between components, which can repair the clustering where Leiden was wrong.

    The clusters are only as good as the space Leiden runs in: Leiden on the ``z`` of a first,
    unsupervised model can separate cell types better than Leiden on the PCA. The two-stage
    recipe (the benchmarks page measures it against a single model)::

        GMVAE.setup_anndata(adata)
        first = GMVAE(adata, n_components=n_types)
        first.train()
        scgmvae.tl.embed(first, adata)
        adata.obs["leiden"] = scgmvae.tl.leiden_clusters(adata, use_rep="X_scgmvae_z")
        GMVAE.setup_anndata(adata, labels_key="leiden")
        model = scgmvae.tl.leiden_guided_train(GMVAE(adata), 50, 50)

    Parameters
    ----------
    model
        A GMVAE or CGMVAE whose registered labels are the clusters to learn.
    supervised_epochs
        Epochs with the clusters as labels.
    unsupervised_epochs
        Further epochs ignoring the labels.
    **train_kwargs
        Passed to ``model.train`` in both phases.

    Returns
    -------
    The trained model (trained in place).
    """
    if not model.label_names:
        raise ValueError(
            "The model has no registered labels; set it up with labels_key= the column of "
            "Leiden clusters (scgmvae.tl.leiden_clusters)."
        )
    model.train(max_epochs=supervised_epochs, **train_kwargs)
    if unsupervised_epochs > 0:
        plan_kwargs = {**train_kwargs.pop("plan_kwargs", {}), "use_labels": False}
        model.train(max_epochs=unsupervised_epochs, plan_kwargs=plan_kwargs, **train_kwargs)
    return model
