"""Pseudobulk differential expression: do predicted counts recover the real DEGs of a type?

Users who need counts from a prediction mostly want a pseudobulk DE (cells summed per donor,
then a test between conditions across donors). :func:`pseudobulk_top_degs` is a plain version of
it: per donor, the counts of each condition are summed and turned into log2(CPM + 1); the
response per donor is the stimulated minus the control value, and genes are ranked by a
moderated paired t-statistic over the donors (the sd gets the median sd of the genes added,
SAM's fudge factor, so genes that barely vary across donors do not top the list by chance).
"""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd

COUNTS_LAYER = "counts"
"""Where decoded predictions keep their sampled counts (``predict_perturbation``)."""
N_SPLITS = 5
"""Random splits of the real cells averaged by :func:`split_half_overlap`, as many as the other
scores' noise ceiling uses."""


def _summed_counts(adata: anndata.AnnData, donor_key: str, layer: str | None) -> pd.DataFrame:
    """Donors x genes: the counts of each donor's cells summed."""
    counts = adata.X if layer is None else adata.layers[layer]
    donors = adata.obs[donor_key].astype(str).to_numpy()
    rows = {}
    for donor in np.unique(donors):
        block = counts[donors == donor]
        rows[donor] = np.asarray(block.sum(0)).ravel()
    return pd.DataFrame.from_dict(rows, orient="index", columns=adata.var_names)


def pseudobulk_top_degs(
    stimulated: anndata.AnnData,
    control: anndata.AnnData,
    donor_key: str,
    n_genes: int = 100,
    stimulated_layer: str | None = None,
) -> list[str]:
    """The ``n_genes`` genes with the largest moderated paired t over the donors.

    ``control`` holds raw counts in ``.X``; ``stimulated`` holds them in ``.X`` or in
    ``stimulated_layer`` (e.g. the sampled counts of a decoded prediction). Only donors with
    cells under both conditions count; at least two are needed.
    """
    stim = _summed_counts(stimulated, donor_key, stimulated_layer)
    ctrl = _summed_counts(control, donor_key, None)
    donors = stim.index.intersection(ctrl.index)
    if len(donors) < 2:
        raise ValueError(
            f"Pseudobulk DE needs two donors with both conditions, got {len(donors)}."
        )

    def log_cpm(summed: pd.DataFrame) -> pd.DataFrame:
        return np.log2(summed.div(summed.sum(1), axis=0) * 1e6 + 1)

    responses = log_cpm(stim.loc[donors]) - log_cpm(ctrl.loc[donors])
    sd = responses.std(0, ddof=1)
    t = responses.mean(0) / ((sd + sd.median()) / np.sqrt(len(donors)))
    return list(t.abs().sort_values(ascending=False).index[:n_genes])


def has_counts(predicted: anndata.AnnData) -> bool:
    """Whether a prediction carries sampled counts to test."""
    return COUNTS_LAYER in predicted.layers


def split_half_overlap(
    stimulated: anndata.AnnData,
    control: anndata.AnnData,
    donor_key: str,
    seed: int,
    n_splits: int = N_SPLITS,
    n_genes: int = 100,
) -> float:
    """The noise ceiling of the overlap: real stimulated cells split in two halves within
    each donor, the share of one half's pseudobulk top DEGs (against ``control``) among the
    other half's, averaged over ``n_splits`` random splits.

    Each list comes from half the cells, so this is how far two samples of real cells of that
    size agree, a reference for a prediction's overlap rather than a strict bound on it.
    """
    rng = np.random.default_rng(seed)
    donors = stimulated.obs[donor_key].astype(str).to_numpy()
    shares = []
    for _ in range(n_splits):
        first = np.zeros(stimulated.n_obs, dtype=bool)
        for donor in np.unique(donors):
            cells = rng.permutation(np.flatnonzero(donors == donor))
            first[cells[: len(cells) // 2]] = True
        one = pseudobulk_top_degs(stimulated[first], control, donor_key, n_genes)
        other = pseudobulk_top_degs(stimulated[~first], control, donor_key, n_genes)
        shares.append(len(set(one).intersection(other)) / n_genes)
    return float(np.mean(shares))
