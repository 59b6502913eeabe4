"""How far synthetic cells are from real ones: a classifier, distances and per-gene statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._distances import N_COMPS, energy_distance, shared_pca
from ._expression import _dense, check_same_genes, log_normalize
from ._perturbation import squared_pearson

if TYPE_CHECKING:
    from anndata import AnnData

CLASSIFIER_FOLDS = 5
"""Folds of the cross-validated real-vs-synthetic classifiers."""
FOREST_TREES = 200
"""Trees of the random forest that tells synthetic from real cells."""
MIN_CELLS = 2 * CLASSIFIER_FOLDS
"""Fewest cells per set: each fold needs cells of both kinds, the split distance two halves."""


def generation_scores(
    synthetic: AnnData,
    real: AnnData,
    n_comps: int = N_COMPS,
    random_state: int | None = 0,
) -> pd.Series:
    """Scores of how well synthetic cells pass for real cells of the same kind.

    Compare, for example, ``model.generate()`` cells of one component and condition with real
    held-out cells of that type and condition. Both sets are log-normalised (log1p CP10k) when
    they hold counts, the larger set is subsampled to the size of the smaller, and the cells
    are compared in the principal components of the two samples together (:func:`shared_pca`),
    which treat both sets alike.

    - ``classifier_auc``: ROC AUC of a logistic regression telling the two sets apart,
      cross-validated (5 folds): 0.5 when it cannot tell them apart, 1 when it always can. A
      linear classifier finds sets whose cells sit apart on average.
    - ``classifier_auc_forest``: the same for a random forest (the classifier of scGAN's
      and GRouNdGAN's papers), on the same folds. It also finds sets that no linear boundary
      separates, such as cells around the right centre with too wide a spread.
    - ``e_distance`` and ``e_distance_real_split``: the E-distance (:func:`energy_distance`)
      between the synthetic cells and one random half of the real cells, and between the two
      halves of the real cells, with the synthetic cells subsampled to the size of the other
      half so that both distances carry the same finite-sample bias. ``e_distance_ratio`` is
      their ratio: 1 means the synthetic cells are as close as real cells of the same kind.
    - ``r2_mean``, ``r2_var`` and ``r2_zero_fraction``: squared Pearson r, over the genes, of
      the per-gene mean, variance and fraction of zeros of the synthetic against the real
      cells (the mean-variance relation and the zeros of the data).

    Parameters
    ----------
    synthetic
        Synthetic cells (counts or log-normalised values), the same genes as ``real``.
    real
        Real cells they should resemble.
    n_comps
        Principal components the cells are compared in.
    random_state
        Seed of the subsampling, the halves and the folds (``None``: a fresh one).

    Returns
    -------
    The scores by name.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    check_same_genes(real, synthetic=synthetic)
    for name, cells in (("synthetic", synthetic), ("real", real)):
        if cells.n_obs < MIN_CELLS:
            raise ValueError(
                f"generation_scores needs at least {MIN_CELLS} {name} cells, got {cells.n_obs}."
            )
    rng = np.random.default_rng(random_state)
    synthetic_x = _dense(log_normalize(synthetic).X)
    real_x = _dense(log_normalize(real).X)
    n_each = min(len(real_x), len(synthetic_x))
    real_rows = rng.choice(len(real_x), n_each, replace=False)
    synthetic_rows = rng.choice(len(synthetic_x), n_each, replace=False)
    balanced = np.vstack([real_x[real_rows], synthetic_x[synthetic_rows]])
    # fitted on both sets alike: components fitted on one set alone would capture its own
    # cells' noise, which sets that set apart from any other (acute for a few hundred cells)
    balanced_pcs, real_pcs, synthetic_pcs = shared_pca(
        balanced, real_x, synthetic_x, n_comps=n_comps
    )

    is_synthetic = np.repeat([0, 1], n_each)
    folds = StratifiedKFold(CLASSIFIER_FOLDS, shuffle=True, random_state=rng.integers(2**31))
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    decision = cross_val_predict(
        classifier, balanced_pcs, is_synthetic, cv=folds, method="decision_function"
    )
    forest = RandomForestClassifier(FOREST_TREES, random_state=rng.integers(2**31))
    forest_votes = cross_val_predict(
        forest, balanced_pcs, is_synthetic, cv=folds, method="predict_proba"
    )[:, 1]

    order = rng.permutation(len(real_pcs))
    half = len(real_pcs) // 2
    first, second = real_pcs[order[:half]], real_pcs[order[half:]]
    n_synthetic = min(half, len(synthetic_pcs))
    same_size = synthetic_pcs[rng.choice(len(synthetic_pcs), n_synthetic, replace=False)]
    e_distance = energy_distance(same_size, second)
    e_distance_real_split = energy_distance(first, second)

    return pd.Series(
        {
            "classifier_auc": roc_auc_score(is_synthetic, decision),
            "classifier_auc_forest": roc_auc_score(is_synthetic, forest_votes),
            "e_distance": e_distance,
            "e_distance_real_split": e_distance_real_split,
            "e_distance_ratio": e_distance / e_distance_real_split,
            "r2_mean": squared_pearson(synthetic_x.mean(0), real_x.mean(0)),
            "r2_var": squared_pearson(synthetic_x.var(0), real_x.var(0)),
            "r2_zero_fraction": squared_pearson((synthetic_x == 0).mean(0), (real_x == 0).mean(0)),
        },
        name="scores",
    )
