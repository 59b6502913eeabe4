"""The scGen-style regression of predicted against real mean expression."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from scgmvae.tl._perturbation import _r2, log_normalize, top_degs

from ._utils import save_figure

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from anndata import AnnData
    from matplotlib.axes import Axes

logger = logging.getLogger(__name__)

N_DEGS = 100
# Label offsets (points) cycled through so that neighbouring DEG names overlap less.
_LABEL_OFFSETS = ((6, 6), (6, -10), (-6, 6), (-6, -10))


def _gene_means(adata: AnnData) -> np.ndarray:
    """Per-gene mean of the log-normalised expression, in float64."""
    return np.asarray(log_normalize(adata).X.mean(axis=0, dtype=np.float64)).ravel()


def mean_regression(
    predicted: AnnData,
    real: AnnData,
    control: AnnData | None = None,
    degs: Sequence[str] | None = None,
    n_labels: int = 10,
    ax: Axes | None = None,
    save: str | os.PathLike | None = None,
    title: str | None = None,
) -> Axes:
    """Mean expression of predicted against real cells, gene by gene (scGen figure).

    Each point is a gene: its mean over the ``real`` cells (x) and over the ``predicted``
    cells (y), both in log1p(CP10k) space (counts are normalised on a copy, log-normalised
    data are used as they are). The top DEGs are highlighted and the first ``n_labels`` of
    them named; a least-squares line is drawn and the corner reports R² (squared Pearson r of
    the means, as in :func:`scgmvae.tl.evaluate_perturbation`) on all genes and on the DEGs.

    Parameters
    ----------
    predicted
        Predicted cells, e.g. from :meth:`scgmvae.model.CGMVAE.predict_perturbation`.
    real
        Real cells to compare with (e.g. the held-out stimulated cells), same genes in the
        same order.
    control
        Real control cells of the same type; used to find the DEGs when ``degs`` is None.
    degs
        Genes to highlight, most important first. By default the top 100 DEGs of ``real``
        against ``control`` (Wilcoxon); none without ``control``.
    n_labels
        Number of DEGs to name.
    ax
        Axes to draw into; a new figure by default.
    save
        Write the figure to this file.
    title
        Title of the axes.

    Returns
    -------
    The axes with the plot.
    """
    genes = real.var_names
    others = [("predicted", predicted)] + ([] if control is None else [("control", control)])
    for name, other in others:
        if not other.var_names.equals(genes):
            raise ValueError(
                f"The {name} cells have other genes than the real cells; subset both to the same "
                f"var_names in the same order (e.g. {name}[:, real.var_names])."
            )
    if degs is None and control is not None:
        degs = top_degs(real, control, n_genes=N_DEGS)
    degs = [] if degs is None else list(degs)
    deg_idx = genes.get_indexer(degs)
    if (deg_idx < 0).any():
        missing = [g for g, i in zip(degs, deg_idx, strict=True) if i < 0]
        raise ValueError(f"The DEGs {missing[:5]} are not among the genes of the cells.")

    mean_real = _gene_means(real)
    mean_pred = _gene_means(predicted)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    is_deg = np.zeros(len(genes), dtype=bool)
    is_deg[deg_idx] = True
    ax.scatter(mean_real[~is_deg], mean_pred[~is_deg], s=5, c="0.7", linewidths=0)
    lines = [f"R² all genes = {_r2(mean_real, mean_pred):.3f}"]
    if degs:
        ax.scatter(
            mean_real[deg_idx],
            mean_pred[deg_idx],
            s=12,
            c="tab:red",
            linewidths=0,
            label=f"DEGs ({len(degs)})",
        )
        ax.legend(loc="lower right", frameon=False, fontsize=8)
        lines.append(f"R² top DEGs = {_r2(mean_real[deg_idx], mean_pred[deg_idx]):.3f}")
    for i, gene in enumerate(degs[:n_labels]):
        dx, dy = _LABEL_OFFSETS[i % len(_LABEL_OFFSETS)]
        ax.annotate(
            gene,
            xy=(mean_real[deg_idx[i]], mean_pred[deg_idx[i]]),
            xytext=(dx, dy),
            textcoords="offset points",
            ha="left" if dx > 0 else "right",
            fontsize=7,
            arrowprops={"arrowstyle": "-", "color": "0.3", "linewidth": 0.5},
        )
    if np.ptp(mean_real) > 0:
        slope, intercept = np.polyfit(mean_real, mean_pred, deg=1)
        x = np.array([mean_real.min(), mean_real.max()])
        ax.plot(x, slope * x + intercept, color="black", linewidth=1)
    ax.text(0.03, 0.97, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=9)
    ax.set_xlabel("mean expression, real")
    ax.set_ylabel("mean expression, predicted")
    if title is not None:
        ax.set_title(title)
    save_figure(ax.figure, save)
    return ax
