"""Mapping mixture components to labels and scoring clusterings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import (
    adjusted_rand_score,
    completeness_score,
    homogeneity_score,
    normalized_mutual_info_score,
)


def map_components(
    components: Sequence,
    labels: Sequence,
    method: Literal["majority", "hungarian"] = "majority",
) -> dict:
    """Map each predicted component (cluster) to a label.

    Parameters
    ----------
    components
        Predicted component (cluster) of each cell.
    labels
        True label of each cell.
    method
        ``"majority"``: each component gets the label most of its cells have (several components
        may share a label; the thesis' convention). ``"hungarian"``: a one-to-one assignment
        maximising the number of matched cells; components left without a label (more
        components than labels) map to ``None``.

    Returns
    -------
    A dict from component to label.
    """
    if len(components) != len(labels):
        raise ValueError(
            f"components ({len(components)}) and labels ({len(labels)}) differ in length."
        )
    table = pd.crosstab(pd.Series(np.asarray(components)), pd.Series(np.asarray(labels)))
    if method == "majority":
        best = table.to_numpy().argmax(1)
        return {comp: table.columns[b] for comp, b in zip(table.index, best, strict=True)}
    if method == "hungarian":
        rows, cols = linear_sum_assignment(-table.values)
        mapping = dict.fromkeys(table.index)
        mapping.update({table.index[r]: table.columns[c] for r, c in zip(rows, cols, strict=True)})
        return mapping
    raise ValueError(f"method must be 'majority' or 'hungarian', got {method!r}.")


def clustering_scores(components: Sequence, labels: Sequence) -> dict[str, float]:
    """ARI, NMI, homogeneity, completeness, accuracies and the number of clusters.

    Homogeneity is 1 when every cluster holds cells of one label only, completeness when all
    cells of a label are in one cluster; NMI is their harmonic mean. The accuracies map each
    cluster to its majority label (several clusters may share one) or one-to-one (Hungarian).

    Parameters
    ----------
    components
        Predicted component (cluster) of each cell.
    labels
        True label of each cell.

    Returns
    -------
    A dict with keys ``ari``, ``nmi``, ``homogeneity``, ``completeness``,
    ``accuracy_majority``, ``accuracy_hungarian`` and ``n_clusters``.
    """
    components = np.asarray(components)
    labels = np.asarray(labels)
    scores = {
        "ari": float(adjusted_rand_score(labels, components)),
        "nmi": float(normalized_mutual_info_score(labels, components)),
        "homogeneity": float(homogeneity_score(labels, components)),
        "completeness": float(completeness_score(labels, components)),
    }
    for method in ("majority", "hungarian"):
        mapping = map_components(components, labels, method=method)
        predicted = np.array([mapping[c] for c in components], dtype=object)
        scores[f"accuracy_{method}"] = float(np.mean(predicted == labels))
    scores["n_clusters"] = len(np.unique(components))
    return scores
