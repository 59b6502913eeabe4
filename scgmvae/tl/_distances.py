"""Distances between two sets of cells: pertpy's E-distance and MMD, and a shared PCA space."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.spatial.distance import cdist

from ._expression import check_same_genes, log_normalize

if TYPE_CHECKING:
    from anndata import AnnData

# rows of x per block of pairwise distances: bounds the memory of a block to
# _BLOCK_ROWS * len(y) float64 values while keeping the work vectorised
_BLOCK_ROWS = 1024
# principal components of the shared space, as pertpy's and scanpy's default
N_COMPS = 50


def _as_cells(x, name: str) -> np.ndarray:
    array = x.toarray() if sparse.issparse(x) else np.asarray(x)
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of cells x features, got {array.ndim}-D.")
    if len(array) == 0:
        raise ValueError(f"{name} holds no cells.")
    return array


def _pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_cells(x, "x"), _as_cells(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} features and y has {y.shape[1]}.")
    return x, y


def _blocks(x: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(x), _BLOCK_ROWS):
        yield x[start : start + _BLOCK_ROWS]


def _mean_pairwise(x: np.ndarray, y: np.ndarray, kernel) -> float:
    """Mean of ``kernel(a, b)`` over all pairs of a row ``a`` of x and a row ``b`` of y."""
    total = sum(float(kernel(block, y).sum()) for block in _blocks(x))
    return total / (len(x) * len(y))


def energy_distance(x, y) -> float:
    """Energy distance (E-distance) between two sets of cells, as pertpy defines it.

    Twice the mean Euclidean distance between a cell of ``x`` and a cell of ``y``, minus the
    mean Euclidean distance between two cells of ``x`` and minus that of ``y``. The distances
    are plain (not squared) Euclidean distances, and the within-set means run over all ordered
    pairs including each cell with itself (a zero), so they divide by ``n**2``; this is
    ``pertpy.tools.Distance(metric="edistance")``. The result is symmetric, never negative, and
    zero for two copies of the same set.

    Parameters
    ----------
    x
        Cells x features (e.g. principal components); dense or sparse.
    y
        Cells x the same features.

    Returns
    -------
    The E-distance.
    """
    x, y = _pair(x, y)
    between = _mean_pairwise(x, y, cdist)
    return 2 * between - _mean_pairwise(x, x, cdist) - _mean_pairwise(y, y, cdist)


def _min_max_scale(cells: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``cells`` with each feature mapped by the reference's range onto [0, 1].

    This is scikit-learn's ``MinMaxScaler`` fitted on ``reference``: a feature the reference
    does not vary is only shifted.
    """
    low = reference.min(0)
    span = reference.max(0) - low
    return (cells - low) / np.where(span == 0, 1.0, span)


def scaled_energy_distance(stimulated, predicted, control) -> float:
    """E-distance of a prediction to the real cells, relative to the control cells, as pertpy.

    ``pertpy.tools.Distance(metric="edistance").compare_distance(stimulated, predicted,
    control, mode="scaled")``: every feature of the real stimulated and the predicted cells is
    min-max scaled by the control cells' range (the control cells' minimum maps to 0 and
    their maximum to 1; a feature the control cells do not vary is only shifted), and the
    result is the E-distance (:func:`energy_distance`) between the scaled stimulated and
    predicted cells divided by that between the control cells and the scaled predicted cells.
    As in pertpy, the control cells enter the denominator unscaled, so numerator and
    denominator are measured in different units; smaller is better.

    Parameters
    ----------
    stimulated
        Real stimulated cells x features (e.g. principal components); dense or sparse.
    predicted
        Predicted cells x the same features.
    control
        Control cells x the same features; their range sets the scale.

    Returns
    -------
    The ratio, or NaN when the denominator is zero.
    """
    control, predicted = _pair(control, predicted)
    stimulated, predicted = _pair(stimulated, predicted)
    stimulated, predicted = (_min_max_scale(x, control) for x in (stimulated, predicted))
    to_control = energy_distance(control, predicted)
    if to_control == 0:
        return float("nan")
    return energy_distance(stimulated, predicted) / to_control


def mmd(
    x,
    y,
    kernel: Literal["linear", "rbf", "poly"] = "linear",
    gamma: float = 1.0,
    degree: float = 2.0,
) -> float:
    """Maximum mean discrepancy between two sets of cells, as pertpy defines it.

    The squared MMD ``mean k(x, x') + mean k(y, y') - 2 mean k(x, y)``, with the means over all
    pairs including each cell with itself (the biased estimate); this is
    ``pertpy.tools.Distance(metric="mmd")`` with the same keyword arguments. pertpy's default
    kernel is the linear one, ``k(a, b) = a . b``, for which the MMD is the squared Euclidean
    distance between the two mean cells. ``"rbf"`` is ``exp(-gamma * |a - b|**2)`` and ``"poly"``
    ``(gamma * a . b) ** degree`` (no offset). Symmetric, and zero for two copies of a set.

    Parameters
    ----------
    x
        Cells x features (e.g. principal components); dense or sparse.
    y
        Cells x the same features.
    kernel
        ``"linear"``, ``"rbf"`` or ``"poly"``.
    gamma
        Scale of the rbf and polynomial kernels.
    degree
        Degree of the polynomial kernel.

    Returns
    -------
    The squared MMD.
    """
    x, y = _pair(x, y)
    if kernel == "linear":
        delta = x.mean(0) - y.mean(0)
        return float(delta @ delta)
    if kernel == "rbf":

        def k(a, b):
            return np.exp(-gamma * cdist(a, b, "sqeuclidean"))

    elif kernel == "poly":

        def k(a, b):
            return (gamma * (a @ b.T)) ** degree

    else:
        raise ValueError(f"Unknown kernel {kernel!r}; use 'linear', 'rbf' or 'poly'.")
    return _mean_pairwise(x, x, k) + _mean_pairwise(y, y, k) - 2 * _mean_pairwise(x, y, k)


def shared_pca(reference, *others, n_comps: int = N_COMPS) -> list[np.ndarray]:
    """Principal components fitted on ``reference`` cells, with ``others`` projected onto them.

    The data are centred on the reference cells' mean gene expression (not scaled, as
    :func:`scanpy.pp.pca` by default), and the components come from the reference cells alone,
    so the cells projected onto them cannot shape the space they are compared in.

    Parameters
    ----------
    reference
        Cells x genes that define the space (e.g. the real stimulated and control cells).
    *others
        Further cells x the same genes to project (e.g. the predicted cells).
    n_comps
        Number of components, capped at the reference's number of cells minus one and of genes.

    Returns
    -------
    The coordinates of ``reference`` and then of each of ``others``, each cells x components.
    """
    reference = _as_cells(reference, "reference")
    others = [_as_cells(o, "other") for o in others]
    for other in others:
        if other.shape[1] != reference.shape[1]:
            raise ValueError("All cells must have the same genes as the reference.")
    n_comps = max(1, min(n_comps, len(reference) - 1, reference.shape[1]))
    mean, axes = _principal_axes(reference, n_comps)
    return [(cells - mean) @ axes for cells in (reference, *others)]


# the principal axes of the last few references: scoring several predictions against the same
# real cells would otherwise repeat the same SVD, the slowest step of a score
_AXES_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_AXES_CACHE_SIZE = 4


def _principal_axes(reference: np.ndarray, n_comps: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference's gene means and its first ``n_comps`` principal axes (genes x comps)."""
    key = (
        reference.shape,
        n_comps,
        hashlib.blake2b(np.ascontiguousarray(reference).data, digest_size=16).hexdigest(),
    )
    if key not in _AXES_CACHE:
        mean = reference.mean(0)
        # the right singular vectors of the centred reference are its principal axes
        _, _, axes = np.linalg.svd(reference - mean, full_matrices=False)
        if len(_AXES_CACHE) >= _AXES_CACHE_SIZE:
            _AXES_CACHE.pop(next(iter(_AXES_CACHE)))
        _AXES_CACHE[key] = (mean, axes[:n_comps].T.copy())
    return _AXES_CACHE[key]


def perturbation_distances(
    predicted: AnnData,
    stimulated: AnnData,
    control: AnnData,
    n_comps: int = N_COMPS,
    kernel: Literal["linear", "rbf", "poly"] = "linear",
) -> pd.DataFrame:
    """E-distances and MMD of predicted (and control) cells to the real stimulated cells.

    All cells are compared in log1p(CP10k) space (counts are normalised on a copy), projected
    on principal components fitted on the real stimulated and control cells together (see
    :func:`shared_pca`); the predicted cells do not take part in the fit. The ``control`` row
    scores the control cells as a prediction of the stimulated ones, the baseline a prediction
    should beat.

    Parameters
    ----------
    predicted
        Predicted stimulated cells.
    stimulated
        Real stimulated cells (held out from training).
    control
        Real control cells of the same type (the input of the prediction).
    n_comps
        Number of principal components.
    kernel
        Kernel of the MMD (see :func:`mmd`).

    Returns
    -------
    DataFrame with rows ``prediction`` and ``control`` and columns ``e_distance``, ``mmd`` and
    ``e_distance_scaled`` (:func:`scaled_energy_distance`, with the control cells' range).
    """
    check_same_genes(stimulated, "stimulated", predicted=predicted, control=control)
    stim, ctrl, pred = (
        _as_cells(log_normalize(adata).X, name)
        for name, adata in (
            ("stimulated", stimulated),
            ("control", control),
            ("predicted", predicted),
        )
    )
    real, pred_pcs = shared_pca(np.vstack([stim, ctrl]), pred, n_comps=n_comps)
    stim_pcs, ctrl_pcs = real[: len(stim)], real[len(stim) :]
    rows = {
        name: {
            "e_distance": energy_distance(cells, stim_pcs),
            "mmd": mmd(cells, stim_pcs, kernel),
            "e_distance_scaled": scaled_energy_distance(stim_pcs, cells, ctrl_pcs),
        }
        for name, cells in (("prediction", pred_pcs), ("control", ctrl_pcs))
    }
    return pd.DataFrame.from_dict(rows, orient="index")
