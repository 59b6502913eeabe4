"""Scoring perturbation predictions with the scGen protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse

from scgmvae._validation import is_counts

if TYPE_CHECKING:
    from anndata import AnnData


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if sparse.issparse(matrix) else matrix, dtype=np.float64)


def check_same_genes(reference: AnnData, hint: str = "", **others: AnnData) -> None:
    """Raise when any of ``others`` has other genes than ``reference`` (or another order)."""
    for name, other in others.items():
        if other is not None and not other.var_names.equals(reference.var_names):
            raise ValueError(
                f"The {name} cells have other genes than the {hint or 'reference'} cells; "
                f"subset them to the same var_names in the same order (e.g. "
                f"{name}[:, reference.var_names])."
            )


def gene_means(adata: AnnData) -> np.ndarray:
    """Per-gene mean of the log-normalised expression (counts are normalised on a copy)."""
    return _dense(log_normalize(adata).X).mean(0)


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

    if not is_counts(adata.X):
        return adata
    normalised = adata.copy()
    sc.pp.normalize_total(normalised, target_sum=target_sum)
    sc.pp.log1p(normalised)
    return normalised


def squared_pearson(x: np.ndarray, y: np.ndarray) -> float:
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
    distances: bool = True,
) -> pd.DataFrame:
    """Score predicted stimulated cells against real ones (scGen protocol and distributions).

    All three AnnData are compared in log1p(CP10k) space (counts are normalised on a copy).
    Reports, for the prediction and for the control-as-prediction baseline: R² (squared
    Pearson r) of per-gene means against the real stimulated cells on all genes and on the
    top DEGs (Wilcoxon, real stimulated vs control); R² of the predicted vs real log
    fold-changes (vs control) on those DEGs, where a copy of the control scores 0; R² of the
    per-gene variances on all genes (does the prediction keep the cells' spread, gene by
    gene?); and the E-distance and MMD between the predicted and the real stimulated cells in
    a PCA space fitted on the real cells (:func:`~scgmvae.tl.perturbation_distances`), which
    score whole distributions: a prediction that collapses the cells' spread can have a high
    R² of means but not a small E-distance.

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
    distances
        Add the E-distance and MMD columns.

    Returns
    -------
    DataFrame with rows ``prediction`` and ``control`` and columns ``r2_all``,
    ``r2_top_degs``, ``r2_lfc_top_degs``, ``r2_var_all`` and, with ``distances``,
    ``e_distance`` and ``mmd``.
    """
    from ._distances import perturbation_distances

    genes = stimulated.var_names
    check_same_genes(stimulated, "stimulated", predicted=predicted, control=control)
    if degs is None:
        degs = top_degs(stimulated, control, n_genes=n_degs)
    deg_idx = genes.get_indexer(degs)
    if (deg_idx < 0).any():
        raise ValueError("Some DEGs are not among the genes of the cells.")
    cells = {"stimulated": stimulated, "control": control, "prediction": predicted}
    normalised = {name: _dense(log_normalize(adata).X) for name, adata in cells.items()}
    means = {name: x.mean(0) for name, x in normalised.items()}
    variances = {name: x.var(0) for name, x in normalised.items()}
    mean_real, mean_ctrl = means["stimulated"], means["control"]
    rows = {}
    for name in ("prediction", "control"):
        mean = means[name]
        rows[name] = {
            "r2_all": squared_pearson(mean, mean_real),
            "r2_top_degs": squared_pearson(mean[deg_idx], mean_real[deg_idx]),
            "r2_lfc_top_degs": squared_pearson(
                mean[deg_idx] - mean_ctrl[deg_idx], mean_real[deg_idx] - mean_ctrl[deg_idx]
            ),
            "r2_var_all": squared_pearson(variances[name], variances["stimulated"]),
        }
    scores = pd.DataFrame.from_dict(rows, orient="index")
    if distances:
        scores = scores.join(perturbation_distances(predicted, stimulated, control))
    return scores
