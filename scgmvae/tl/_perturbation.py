"""Scoring perturbation predictions: the scGen protocol, distributions and calibrated scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._distances import perturbation_distances
from ._expression import _dense, check_same_genes, gene_means, log_normalize

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

# number of DEGs of the scGen protocol
N_DEGS = 100
# random halves of the stimulated cells averaged by the noise ceiling
N_SPLITS = 5
# fewest stimulated cells per half of a noise-ceiling split
MIN_HALF_CELLS = 2


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant."""
    if np.std(x) == 0 or np.std(y) == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def squared_pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Squared Pearson correlation; 0 when either side is constant."""
    return pearson(x, y) ** 2


def top_degs(
    stimulated: AnnData, control: AnnData, n_genes: int = N_DEGS, method: str = "wilcoxon"
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


def _gene_vector(values: np.ndarray | pd.Series, genes: pd.Index, name: str) -> np.ndarray:
    """``values`` per gene in the order of ``genes``: a Series is aligned by its index."""
    if isinstance(values, pd.Series):
        missing = genes.difference(values.index)
        if len(missing):
            raise ValueError(f"{name} has no value for {len(missing)} genes, e.g. {missing[0]!r}.")
        values = values.reindex(genes)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(genes),):
        raise ValueError(
            f"{name} must hold one value per gene ({len(genes)}), got {values.shape}."
        )
    return values


def _deg_overlap(
    guess: AnnData, guess_x: np.ndarray, reference: AnnData, reference_x: np.ndarray, degs
) -> float:
    """Fraction of ``degs`` among the top DEGs of ``guess`` vs ``reference`` (as many genes).

    Two identical sets of cells have no DEGs, so the overlap is 0 there.
    """
    if guess_x.shape == reference_x.shape and np.array_equal(guess_x, reference_x):
        return 0.0
    found = top_degs(guess, reference, n_genes=len(degs))
    return len(set(found) & set(degs)) / len(degs)


def evaluate_perturbation(
    predicted: AnnData,
    stimulated: AnnData,
    control: AnnData,
    n_degs: int = N_DEGS,
    degs: list[str] | None = None,
    distances: bool = True,
    control_reference: AnnData | None = None,
    pooled_response: np.ndarray | pd.Series | None = None,
) -> pd.DataFrame:
    """Score predicted stimulated cells against real ones (scGen protocol and calibrated).

    All AnnData are compared in log1p(CP10k) space (counts are normalised on a copy). Each
    score is reported for the prediction and for the control-as-prediction baseline.

    The scGen protocol: R² (squared Pearson r) of per-gene means against the real stimulated
    cells on all genes and on the top DEGs (Wilcoxon, real stimulated vs the reference of the
    responses, see below), and R² of the predicted vs real responses (log fold-changes, the
    change of the mean from the reference) on those DEGs. R² of the per-gene variances on all
    genes asks whether the prediction keeps the cells' spread, gene by gene.

    Calibrated scores, on the responses: the Pearson r (not squared, so a response of the
    wrong direction scores negative) of predicted vs real responses on all genes and on the
    top DEGs (PCC-delta); the fraction of the top DEGs whose predicted response has the sign
    of the real one (a zero predicted response has no sign and counts as wrong); and the
    overlap of the DEGs, the fraction of the top DEGs that are also among as many top DEGs of
    the prediction, ranked vs the reference by the same test (a rank test: a prediction that
    moves every cell of a gene, its zeros included, ranks the gene high however small the
    move). With ``pooled_response``, the cell-type-specific part: the Pearson r of predicted
    vs real responses on the top DEGs after the pooled response of the other cell types is
    subtracted from both, the part a held-out type cannot copy from the others.

    The reference of the responses is ``control``, unless ``control_reference`` is given: then
    the DEGs, the responses and every score on them are taken against those cells, so that
    the noise of the prediction's input does not inflate them. Split the control cells in two
    at random, predict from one half (passed as ``control``) and pass the other half here.

    A copy of the reference has no response: its Pearson r, sign accuracy and overlap are 0
    (a correlation with a constant is taken as 0), so the ``control`` row scores 0 there
    unless ``control_reference`` is given. The ``control`` row's cell-type-specific score
    compares minus the pooled response with the real type-specific part.

    Distributions: the E-distance and MMD between the predicted and the real stimulated cells
    in a PCA space fitted on the real stimulated and control cells
    (:func:`~scgmvae.tl.perturbation_distances`), which score whole distributions: a
    prediction that collapses the cells' spread can have a high R² of means but not a small
    E-distance; and the scaled E-distance of pertpy's ``compare_distance(mode="scaled")``
    (:func:`~scgmvae.tl.scaled_energy_distance`).

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
        Use these genes instead of computing the DEGs; the overlap then ranks as many genes of
        the prediction.
    distances
        Add the E-distance, MMD and scaled E-distance columns.
    control_reference
        Further control cells of the same type, not used as the prediction's input: the
        reference of the DEGs and the responses instead of ``control``. The ``control`` row and
        the distances still use ``control``.
    pooled_response
        The pooled response of the other cell types per gene, in log1p(CP10k) (e.g. from
        :func:`~scgmvae.tl.pooled_response`); an array in the order of the genes or a Series
        indexed by gene names. Adds the cell-type-specific score.

    Returns
    -------
    DataFrame with rows ``prediction`` and ``control`` and columns ``r2_all``,
    ``r2_top_degs``, ``r2_lfc_top_degs`` (R² of the responses on the DEGs), ``r2_var_all``,
    ``pcc_delta_all`` and ``pcc_delta_top_degs`` (Pearson r of the responses),
    ``sign_accuracy_top_degs``, ``overlap_top_degs``, with ``pooled_response``
    ``pcc_type_specific_top_degs``, and with ``distances`` ``e_distance``, ``mmd`` and
    ``e_distance_scaled``.
    """
    genes = stimulated.var_names
    check_same_genes(
        stimulated,
        "stimulated",
        predicted=predicted,
        control=control,
        control_reference=control_reference,
    )
    reference = control if control_reference is None else control_reference
    if degs is None:
        degs = top_degs(stimulated, reference, n_genes=n_degs)
    deg_idx = genes.get_indexer(degs)
    if (deg_idx < 0).any():
        raise ValueError("Some DEGs are not among the genes of the cells.")
    cells = {"stimulated": stimulated, "control": control, "prediction": predicted}
    normalised = {name: _dense(log_normalize(adata).X) for name, adata in cells.items()}
    cells["reference"] = reference
    normalised["reference"] = (
        normalised["control"]
        if control_reference is None
        else _dense(log_normalize(control_reference).X)
    )
    means = {name: x.mean(0) for name, x in normalised.items()}
    variances = {name: normalised[name].var(0) for name in ("stimulated", "prediction", "control")}
    mean_real = means["stimulated"]
    real_response = mean_real - means["reference"]
    pooled = None
    if pooled_response is not None:
        pooled = _gene_vector(pooled_response, genes, "pooled_response")
    rows = {}
    for name in ("prediction", "control"):
        mean = means[name]
        response = mean - means["reference"]
        row = {
            "r2_all": squared_pearson(mean, mean_real),
            "r2_top_degs": squared_pearson(mean[deg_idx], mean_real[deg_idx]),
            "r2_lfc_top_degs": squared_pearson(response[deg_idx], real_response[deg_idx]),
            "r2_var_all": squared_pearson(variances[name], variances["stimulated"]),
            "pcc_delta_all": pearson(response, real_response),
            "pcc_delta_top_degs": pearson(response[deg_idx], real_response[deg_idx]),
            "sign_accuracy_top_degs": float(
                np.mean(np.sign(response[deg_idx]) == np.sign(real_response[deg_idx]))
            ),
            "overlap_top_degs": _deg_overlap(
                cells[name], normalised[name], reference, normalised["reference"], degs
            ),
        }
        if pooled is not None:
            row["pcc_type_specific_top_degs"] = pearson(
                (response - pooled)[deg_idx], (real_response - pooled)[deg_idx]
            )
        rows[name] = row
    scores = pd.DataFrame.from_dict(rows, orient="index")
    if distances:
        scores = scores.join(perturbation_distances(predicted, stimulated, control))
    return scores


def noise_ceiling(
    stimulated: AnnData,
    control: AnnData,
    n_splits: int = N_SPLITS,
    seed: int | np.random.Generator | None = None,
    n_degs: int = N_DEGS,
    degs: list[str] | None = None,
    distances: bool = True,
    control_reference: AnnData | None = None,
    pooled_response: np.ndarray | pd.Series | None = None,
) -> pd.DataFrame:
    """The scores of real stimulated cells predicting other real stimulated cells.

    The stimulated cells are split at random into two halves of equal size (one cell is left
    out of an odd number), one half is scored as the prediction of the other with
    :func:`evaluate_perturbation`, and the scores are averaged over ``n_splits`` splits. This
    is the best a prediction can score against a sample of this size: the gap between a
    method's scores and these is what a better method could still gain. The DEGs are those
    of all the stimulated cells (vs ``control_reference`` if given, else ``control``), as in
    the evaluation of a prediction, and the same in every split.

    Parameters
    ----------
    stimulated
        Real stimulated cells.
    control
        Real control cells of the same type.
    n_splits
        Number of random splits averaged.
    seed
        Seed or generator of the splits; ``None`` draws them from fresh entropy of
        :func:`numpy.random.default_rng`. The same seed gives the same scores.
    n_degs
        Number of top DEGs.
    degs
        Use these genes instead of computing the DEGs.
    distances
        Add the E-distance, MMD and scaled E-distance columns.
    control_reference
        Reference control cells of the responses (see :func:`evaluate_perturbation`).
    pooled_response
        Pooled response of the other cell types (see :func:`evaluate_perturbation`).

    Returns
    -------
    DataFrame with the rows and columns of :func:`evaluate_perturbation`, each score the mean
    over the splits (a NaN score of a split is left out of the mean).
    """
    half = stimulated.n_obs // 2
    if half < MIN_HALF_CELLS:
        raise ValueError(
            f"The noise ceiling needs at least {2 * MIN_HALF_CELLS} stimulated cells, "
            f"got {stimulated.n_obs}."
        )
    if degs is None:
        reference = control if control_reference is None else control_reference
        degs = top_degs(stimulated, reference, n_genes=n_degs)
    rng = np.random.default_rng(seed)
    splits = []
    for _ in range(n_splits):
        order = rng.permutation(stimulated.n_obs)
        splits.append(
            evaluate_perturbation(
                stimulated[order[:half]],
                stimulated[order[half : 2 * half]],
                control,
                degs=degs,
                distances=distances,
                control_reference=control_reference,
                pooled_response=pooled_response,
            )
        )
    return pd.concat(splits).groupby(level=0, sort=False).mean()


def type_responses(
    adata: AnnData,
    condition_key: str,
    control: str,
    stimulated: str,
    cell_type_key: str,
    exclude: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """The response of each cell type to a perturbation.

    For each cell type with cells under both conditions, the response is the per-gene mean of
    its stimulated cells minus that of its control cells, in log1p(CP10k) (counts are
    normalised on a copy). Types with cells under one condition only are left out.

    Parameters
    ----------
    adata
        Cells of several types under the control and the stimulated condition, e.g. the
        training data of a held-out-type split.
    condition_key
        Column of ``adata.obs`` with the conditions.
    control
        Label of the control condition.
    stimulated
        Label of the stimulated condition.
    cell_type_key
        Column of ``adata.obs`` with the cell types.
    exclude
        Cell type(s) left out, e.g. the held-out type.

    Returns
    -------
    Types x genes (in the order the types first appear in ``adata.obs``), columns
    ``adata.var_names``.
    """
    conditions = adata.obs[condition_key].astype(str)
    for label in (control, stimulated):
        if label not in set(conditions):
            raise ValueError(f"No cells have {condition_key}={label!r}.")
    types = adata.obs[cell_type_key].astype(str)
    excluded = {exclude} if isinstance(exclude, str) else set(exclude or ())
    responses = {}
    for cell_type in types.unique():
        if cell_type in excluded:
            continue
        in_stimulated = ((types == cell_type) & (conditions == stimulated)).to_numpy()
        in_control = ((types == cell_type) & (conditions == control)).to_numpy()
        if in_stimulated.any() and in_control.any():
            responses[cell_type] = gene_means(adata[in_stimulated]) - gene_means(adata[in_control])
    if not responses:
        raise ValueError(
            f"No cell type outside {sorted(excluded)} has cells under both {control!r} and "
            f"{stimulated!r}."
        )
    return pd.DataFrame.from_dict(responses, orient="index", columns=adata.var_names.copy())


def pooled_response(
    adata: AnnData,
    condition_key: str,
    control: str,
    stimulated: str,
    cell_type_key: str,
    exclude: str | Sequence[str] | None = None,
) -> pd.Series:
    """The mean response of cell types to a perturbation, pooled over the types.

    The mean of :func:`type_responses` over the types, each type weighted alike whatever its
    number of cells. Subtracting it from a type's own response leaves the part specific to that
    type (see ``pooled_response`` of :func:`evaluate_perturbation`); added to control cells it
    is the model-free "trainMean" prediction. The parameters are those of
    :func:`type_responses`.

    Returns
    -------
    The pooled response per gene, indexed by ``adata.var_names``.
    """
    responses = type_responses(
        adata, condition_key, control, stimulated, cell_type_key, exclude=exclude
    )
    return responses.mean(0).rename("response")
