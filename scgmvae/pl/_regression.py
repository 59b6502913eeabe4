"""The scGen-style regression of predicted against real mean expression."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from adjustText import adjust_text

from scgmvae.tl._expression import check_same_genes, gene_means
from scgmvae.tl._perturbation import squared_pearson, top_degs

from ._utils import document_show_save, finish

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from anndata import AnnData
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

N_DEGS = 100
FIGURE_SIZE = (4.5, 4.5)


@document_show_save
def mean_regression(
    predicted: AnnData,
    real: AnnData,
    control: AnnData | None = None,
    degs: Sequence[str] | None = None,
    n_labels: int = 10,
    title: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool | None = None,
) -> Axes | Figure | None:
    """Mean expression of predicted against real cells, gene by gene (scGen figure).

    Each point is a gene: its mean over the ``real`` cells (x) and over the ``predicted``
    cells (y), both in log1p(CP10k) space (counts are normalised on a copy, log-normalised
    data are used as they are). The top DEGs are highlighted and the first ``n_labels`` of
    them named, placed so that names do not overlap; a least-squares line is drawn and the
    corner reports R² (squared Pearson r of the means, as in
    :func:`scgmvae.tl.evaluate_perturbation`) on all genes and on the DEGs.

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
    title
        Title of the axes.
    ax
        Axes to draw into; a new figure by default.
    {show_save}

    Returns
    -------
    The axes (or the figure with ``return_fig``), unless the figure is shown.
    """
    check_same_genes(real, "real", predicted=predicted, control=control)
    genes = real.var_names
    if degs is None and control is not None:
        degs = top_degs(real, control, n_genes=N_DEGS)
    degs = [] if degs is None else list(degs)
    deg_idx = genes.get_indexer(degs)
    if (deg_idx < 0).any():
        missing = [g for g, i in zip(degs, deg_idx, strict=True) if i < 0]
        raise ValueError(f"The DEGs {missing[:5]} are not among the genes of the cells.")

    mean_real, mean_pred = gene_means(real), gene_means(predicted)
    ax_given = ax is not None
    if ax is None:
        _, ax = plt.subplots(figsize=FIGURE_SIZE, layout="constrained")
    is_deg = np.zeros(len(genes), dtype=bool)
    is_deg[deg_idx] = True
    ax.scatter(mean_real[~is_deg], mean_pred[~is_deg], s=5, c="0.7", linewidths=0)
    lines = [f"R² all genes = {squared_pearson(mean_real, mean_pred):.3f}"]
    if degs:
        ax.scatter(
            mean_real[deg_idx],
            mean_pred[deg_idx],
            s=12,
            c="tab:red",
            linewidths=0,
            label=f"top {len(degs)} DEGs",
        )
        ax.legend(loc="lower right", frameon=False, fontsize=8)
        deg_r2 = squared_pearson(mean_real[deg_idx], mean_pred[deg_idx])
        lines.append(f"R² top DEGs = {deg_r2:.3f}")
    if np.ptp(mean_real) > 0:
        slope, intercept = np.polyfit(mean_real, mean_pred, deg=1)
        x = np.array([mean_real.min(), mean_real.max()])
        ax.plot(x, slope * x + intercept, color="black", linewidth=1)
    ax.text(0.03, 0.97, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=9)
    ax.set_xlabel("mean expression, real (log1p CP10k)")
    ax.set_ylabel("mean expression, predicted (log1p CP10k)")
    if title is not None:
        ax.set_title(title)
    labels = [
        ax.text(mean_real[i], mean_pred[i], gene, fontsize=7)
        for gene, i in zip(degs[:n_labels], deg_idx[:n_labels], strict=True)
    ]
    if labels:
        adjust_text(
            labels,
            x=mean_real,
            y=mean_pred,
            ax=ax,
            arrowprops={"arrowstyle": "-", "color": "0.3", "linewidth": 0.5},
        )
    return finish(ax.figure, ax, show=show, save=save, return_fig=return_fig, ax_given=ax_given)
