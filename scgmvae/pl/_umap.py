"""UMAPs of the latent spaces and of generated next to real cells."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anndata
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy import sparse

from scgmvae._neighbors import neighbors
from scgmvae.tl._embed import COMPONENT_KEY, PREDICTION_KEY
from scgmvae.tl._expression import log_normalize

from ._utils import document_show_save, finish

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping, Sequence

    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

PANEL_WIDTH = 5.0
PANEL_HEIGHT = 4.0
DEFAULT_NCOLS = 4
"""Panels per row, as in scanpy.pl.embedding."""
MARKER_AREA = 120_000
"""Default marker size times the number of cells (scanpy's rule)."""
RING_SCALE = 1.6
"""Generated cells' rings are this much larger than the real cells' dots."""
RING_WIDTH = 0.8


def _umap(
    obs_names: pd.Index, representation: np.ndarray, neighbors_kwargs: Mapping[str, Any] | None
) -> np.ndarray:
    """UMAP coordinates of ``representation``, computed on a throwaway AnnData."""
    import scanpy as sc

    scratch = anndata.AnnData(
        obs=pd.DataFrame(index=obs_names.copy()), obsm={"rep": np.asarray(representation)}
    )
    neighbors(scratch, use_rep="rep", **(neighbors_kwargs or {}))
    sc.tl.umap(scratch)
    return scratch.obsm["X_umap"]


def _panel_keys(adata: AnnData, color: str | Sequence[str]) -> list[str | None]:
    """Keep the keys of ``color`` found in ``adata`` (obs column or gene); ``[None]`` if none."""
    keys = [color] if isinstance(color, str) else list(color)
    found = []
    for key in keys:
        if key in adata.var_names or (key in adata.obs and adata.obs[key].notna().any()):
            found.append(key)
        else:
            logger.warning("Skipping color %r: no such obs column with values, nor gene.", key)
    return found or [None]


def _panels(n: int, ncols: int) -> tuple[Figure, np.ndarray]:
    """A grid of ``n`` panels, ``ncols`` per row; the unused places of the last row removed."""
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(PANEL_WIDTH * ncols, PANEL_HEIGHT * nrows),
        squeeze=False,
        layout="constrained",
    )
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


@document_show_save
def latent_umap(
    adata: AnnData,
    representation: str = "z",
    color: str | Sequence[str] = (PREDICTION_KEY, COMPONENT_KEY, "condition"),
    neighbors_kwargs: Mapping[str, Any] | None = None,
    recompute: bool = False,
    ncols: int = DEFAULT_NCOLS,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool | None = None,
    **kwargs: Any,
) -> list[Axes] | Figure | None:
    """UMAP of a latent space of the model, one panel per colour.

    The UMAP of ``obsm["X_scgmvae_<representation>"]`` is computed on a scratch copy, so
    ``adata.obsm["X_umap"]`` and the neighbour graph of ``adata`` stay as they are; the
    coordinates are stored in ``adata.obsm["X_umap_scgmvae_<representation>"]`` and reused by
    later calls. After embedding the cells again (e.g. with a retrained model), pass
    ``recompute=True``.

    Parameters
    ----------
    adata
        Cells embedded by :func:`scgmvae.tl.embed`.
    representation
        Latent space: ``"z"`` or ``"w"``.
    color
        Obs columns or genes to colour by, one panel each; absent ones are skipped with a
        warning. The defaults are the predicted label, the mixture component and the
        condition.
    neighbors_kwargs
        Keyword arguments of :func:`scanpy.pp.neighbors` (e.g. ``n_neighbors``).
    recompute
        Compute the UMAP even when it is stored already.
    ncols
        Panels per row, as in :func:`scanpy.pl.embedding`.
    {show_save}
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (e.g. ``size``, ``palette``, ``legend_loc``).

    Returns
    -------
    The axes, one per colour (or the figure with ``return_fig``), unless the figure is shown.
    """
    import scanpy as sc

    rep_key = f"X_scgmvae_{representation}"
    if rep_key not in adata.obsm:
        raise ValueError(
            f"adata.obsm has no {rep_key!r}; run scgmvae.tl.embed(model, adata) first."
        )
    umap_key = f"X_umap_scgmvae_{representation}"
    if recompute or umap_key not in adata.obsm:
        adata.obsm[umap_key] = _umap(adata.obs_names, adata.obsm[rep_key], neighbors_kwargs)
        logger.info("Stored the UMAP of %r in adata.obsm[%r].", rep_key, umap_key)
    keys = _panel_keys(adata, color)
    fig, axes = _panels(len(keys), ncols)
    for ax, key in zip(axes, keys, strict=True):
        sc.pl.embedding(adata, basis=umap_key, color=key, ax=ax, show=False, **kwargs)
        ax.set_xlabel("UMAP1")
        ax.set_ylabel("UMAP2")
        ax.set_title(representation if key is None else f"{representation}: {key}")
    return finish(fig, list(axes), show=show, save=save, return_fig=return_fig)


def _string_column(obs: pd.DataFrame, key: str | None) -> pd.Series:
    """``obs[key]`` as strings (missing values kept), or all missing when ``key`` is absent."""
    if key is None or key not in obs:
        return pd.Series(pd.NA, index=obs.index, dtype="string")
    return obs[key].astype("string")


def _real_and_generated(
    real: AnnData,
    generated: AnnData,
    real_label_key: str | None,
    real_condition_key: str | None,
) -> AnnData:
    """Log-normalised real and generated cells on their common genes, with shared obs columns."""
    for arg, key in (
        ("real_label_key", real_label_key),
        ("real_condition_key", real_condition_key),
    ):
        if key is not None and key not in real.obs:
            raise ValueError(
                f"real.obs has no column {key!r}; set {arg} to an obs column of the real cells "
                f"(one of {list(real.obs.columns)}) or to None."
            )
    genes = real.var_names.intersection(generated.var_names, sort=False)
    if genes.empty:
        raise ValueError("The real and the generated cells have no genes in common.")
    if len(genes) < max(real.n_vars, generated.n_vars):
        logger.info("Using the %d genes shared by the real and the generated cells.", len(genes))

    x_real = log_normalize(real)[:, genes].X
    x_gen = generated[:, genes].X
    if sparse.issparse(x_real) or sparse.issparse(x_gen):
        x = sparse.vstack([sparse.csr_matrix(x_real), sparse.csr_matrix(x_gen)], format="csr")
    else:
        x = np.vstack([np.asarray(x_real), np.asarray(x_gen)])

    obs = pd.DataFrame(
        {
            "synthetic": np.repeat([False, True], [real.n_obs, generated.n_obs]),
            "label": pd.concat(
                [
                    _string_column(real.obs, real_label_key),
                    _string_column(generated.obs, "label"),
                ]
            ).to_numpy(),
            "condition": pd.concat(
                [
                    _string_column(real.obs, real_condition_key),
                    _string_column(generated.obs, "condition"),
                ]
            ).to_numpy(),
        },
        index=anndata.utils.make_index_unique(real.obs_names.append(generated.obs_names)),
    )
    obs = obs.astype("category")
    return anndata.AnnData(
        X=x.astype(np.float32), obs=obs, var=pd.DataFrame(index=genes.astype(str))
    )


@document_show_save
def generated_vs_real(
    real: AnnData,
    generated: AnnData,
    color: str | Sequence[str] = ("synthetic", "condition", "label"),
    real_label_key: str | None = "cell_type",
    real_condition_key: str | None = "condition",
    n_pcs: int = 30,
    neighbors_kwargs: Mapping[str, Any] | None = None,
    size: float | None = None,
    ncols: int = DEFAULT_NCOLS,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool | None = None,
) -> list[Axes] | Figure | None:
    """Joint UMAP of real cells and cells from :meth:`~scgmvae.model.GMVAE.generate`.

    Real cells are log-normalised (log1p(CP10k), when they hold counts) and stacked with the
    generated cells (already in that space) on their common genes; the real cells' label and
    condition columns are renamed ``label`` and ``condition`` as in the generated cells, and
    ``synthetic`` tells them apart. PCA, neighbours and UMAP are computed on the combined cells.
    Real cells are drawn as filled dots and generated cells as open rings of the same colour,
    so neither hides the other.

    Parameters
    ----------
    real
        Real cells (counts or log-normalised).
    generated
        Generated cells, with obs ``label`` and ``condition`` as returned by ``generate``.
    color
        Columns of the combined cells (``synthetic``, ``label``, ``condition``) or genes to
        colour by, one panel each; absent or empty ones are skipped with a warning.
    real_label_key
        Obs column of ``real`` with the cell labels; None for none.
    real_condition_key
        Obs column of ``real`` with the conditions; None for none.
    n_pcs
        Number of principal components (at most the number of genes or cells minus one).
    neighbors_kwargs
        Keyword arguments of :func:`scanpy.pp.neighbors` (e.g. ``n_neighbors``).
    size
        Marker size; by default it shrinks with the number of cells.
    ncols
        Panels per row.
    {show_save}

    Returns
    -------
    The axes, one per colour (or the figure with ``return_fig``), unless the figure is shown.
    """
    import scanpy as sc

    combined = _real_and_generated(real, generated, real_label_key, real_condition_key)
    n_comps = min(n_pcs, combined.n_vars - 1, combined.n_obs - 1)
    sc.pp.pca(combined, n_comps=n_comps)
    neighbors(combined, use_rep="X_pca", **(neighbors_kwargs or {}))
    sc.tl.umap(combined)

    size = MARKER_AREA / combined.n_obs if size is None else size
    keys = _panel_keys(combined, color)
    fig, axes = _panels(len(keys), ncols)
    for ax, key in zip(axes, keys, strict=True):
        _rings_over_dots(ax, combined, key, size)
        ax.set_title("generated vs real" if key is None else key)
    fig.suptitle(f"{real.n_obs} real cells (dots) and {generated.n_obs} generated cells (rings)")
    return finish(fig, list(axes), show=show, save=save, return_fig=return_fig)


def _cell_colours(adata: AnnData, key: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    """An RGBA colour per cell for ``key``, and the legend entries (category to colour)."""
    from matplotlib import colormaps
    from scanpy.plotting.palettes import default_20, default_102

    n = adata.n_obs
    if key is None:
        return np.tile(plt.matplotlib.colors.to_rgba("0.5"), (n, 1)), {}
    if key in adata.var_names:
        values = np.asarray(
            adata[:, key].X.todense() if sparse.issparse(adata.X) else adata[:, key].X
        )
        values = values.ravel()
        span = np.ptp(values) or 1.0
        return colormaps["viridis"]((values - values.min()) / span), {}
    column = adata.obs[key].astype("category")
    categories = list(column.cat.categories)
    palette = default_20 if len(categories) <= len(default_20) else default_102
    lookup = {
        c: plt.matplotlib.colors.to_rgba(palette[i % len(palette)])
        for i, c in enumerate(categories)
    }
    missing = plt.matplotlib.colors.to_rgba("0.8")
    colours = np.array([lookup.get(v, missing) for v in column.astype(object)])
    return colours, lookup


def _rings_over_dots(ax: Axes, adata: AnnData, key: str | None, size: float) -> None:
    """Real cells as filled dots, generated cells as open rings, coloured by ``key``."""
    from matplotlib.lines import Line2D

    xy = adata.obsm["X_umap"]
    synthetic = adata.obs["synthetic"].to_numpy(dtype=bool)
    colours, legend = _cell_colours(adata, key)
    ax.scatter(*xy[~synthetic].T, s=size, c=colours[~synthetic], linewidths=0)
    ax.scatter(
        *xy[synthetic].T,
        s=size * RING_SCALE,
        facecolors="none",
        edgecolors=colours[synthetic],
        linewidths=RING_WIDTH,
    )
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colour, label=str(name))
        for name, colour in legend.items()
    ]
    handles += [
        Line2D([], [], marker="o", linestyle="", color="0.4", label="real"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="none",
            color="0.4",
            label="generated",
        ),
    ]
    ax.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False, fontsize=8
    )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP1")
    ax.set_ylabel("UMAP2")
