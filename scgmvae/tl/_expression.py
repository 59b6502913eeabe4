"""Expression helpers shared by the perturbation scores and the distances."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
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
    """Per-gene mean of the log-normalised expression (counts are normalised on a copy).

    A sparse matrix stays sparse: the mean is taken without densifying it.
    """
    matrix = log_normalize(adata).X
    if sparse.issparse(matrix):
        return np.asarray(matrix.mean(axis=0, dtype=np.float64)).ravel()
    return _dense(matrix).mean(0)


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
