"""Scoring perturbation predictions with the scGen protocol (DESIGN.md §4)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if sparse.issparse(matrix) else matrix, dtype=np.float64)


def _is_counts(adata: AnnData) -> bool:
    values = adata.X.data if sparse.issparse(adata.X) else np.asarray(adata.X)
    return bool(values.size) and values.min() >= 0 and np.allclose(values, np.round(values))


def log_normalize(adata: AnnData, target_sum: float = 1e4) -> AnnData:
    """A log1p(CP10k) copy of ``adata`` when it holds counts; ``adata`` itself otherwise.

    Parameters
    ----------
    adata
        Cells with raw counts (normalised) or already log-normalised values (kept).
    target_sum
        Counts per cell after normalisation.

    Returns
    -------
    An AnnData in log-normalised space.
    """
    import scanpy as sc

    if not _is_counts(adata):
        return adata
    normalised = adata.copy()
    sc.pp.normalize_total(normalised, target_sum=target_sum)
    sc.pp.log1p(normalised)
    return normalised


def _r2(x: np.ndarray, y: np.ndarray) -> float:
    """Squared Pearson correlation; 0 when either side is constant."""
    if np.std(x) == 0 or np.std(y) == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1] ** 2)


def top_degs(
    stimulated: AnnData, control: AnnData, n_genes: int = 100, method: str = "wilcoxon"
) -> list[str]:
    """Top differentially expressed genes of real stimulated vs control cells.

    Parameters
    ----------
    stimulated
        Real cells under the perturbation (counts or log-normalised).
    control
        Real control cells of the same type.
    n_genes
        Number of genes to return.
    method
        Test of :func:`scanpy.tl.rank_genes_groups`.

    Returns
    -------
    Gene names, most significant first.
    """
    import anndata
    import scanpy as sc

    both = anndata.concat(
        {"stimulated": log_normalize(stimulated), "control": log_normalize(control)},
        label="_group",
        index_unique="-",
    )
    sc.tl.rank_genes_groups(
        both, "_group", groups=["stimulated"], reference="control", method=method, key_added="_d"
    )
    return [str(g) for g in both.uns["_d"]["names"]["stimulated"][:n_genes]]


def evaluate_perturbation(
    predicted: AnnData,
    stimulated: AnnData,
    control: AnnData,
    n_degs: int = 100,
    degs: list[str] | None = None,
) -> pd.DataFrame:
    """Score predicted stimulated cells against real ones (scGen protocol).

    All three AnnData are compared in log1p(CP10k) space (counts are normalised on a copy).
    Reports, for the prediction and for the control-as-prediction baseline: R² (squared
    Pearson r) of per-gene means against the real stimulated cells on all genes and on the
    top DEGs (Wilcoxon, real stimulated vs control), and R² of the predicted vs real log
    fold-changes (vs control) on those DEGs, where a copy of the control scores 0.

    Parameters
    ----------
    predicted
        Predicted stimulated cells, e.g. from :meth:`scgmvae.model.CGMVAE.predict_perturbation`.
    stimulated
        Real stimulated cells (held out from training).
    control
        Real control cells of the same type (the input of the prediction).
    n_degs
        Number of top DEGs.
    degs
        Use these genes instead of computing the DEGs.

    Returns
    -------
    DataFrame with rows ``prediction`` and ``control`` and columns ``r2_all``,
    ``r2_top_degs`` and ``r2_lfc_top_degs``.
    """
    genes = stimulated.var_names
    for name, other in (("predicted", predicted), ("control", control)):
        if not other.var_names.equals(genes):
            raise ValueError(
                f"The {name} cells have other genes than the stimulated cells; subset all three "
                "to the same var_names in the same order."
            )
    if degs is None:
        degs = top_degs(stimulated, control, n_genes=n_degs)
    deg_idx = genes.get_indexer(degs)
    if (deg_idx < 0).any():
        raise ValueError("Some DEGs are not among the genes of the cells.")
    mean_real = _dense(log_normalize(stimulated).X).mean(0)
    mean_ctrl = _dense(log_normalize(control).X).mean(0)
    mean_pred = _dense(log_normalize(predicted).X).mean(0)
    rows = {}
    for name, mean in (("prediction", mean_pred), ("control", mean_ctrl)):
        rows[name] = {
            "r2_all": _r2(mean, mean_real),
            "r2_top_degs": _r2(mean[deg_idx], mean_real[deg_idx]),
            "r2_lfc_top_degs": _r2(
                mean[deg_idx] - mean_ctrl[deg_idx], mean_real[deg_idx] - mean_ctrl[deg_idx]
            ),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
