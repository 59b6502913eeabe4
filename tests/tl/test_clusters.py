"""Mapping components to labels and clustering scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics

import scgmvae


def test_clustering_scores_and_mapping():
    components = np.array([0, 0, 1, 1, 2, 2, 3])
    labels = np.array(["a", "a", "b", "b", "b", "b", "a"])
    majority = scgmvae.tl.map_components(components, labels)
    assert majority == {0: "a", 1: "b", 2: "b", 3: "a"}
    hungarian = scgmvae.tl.map_components(components, labels, method="hungarian")
    assert sorted(v for v in hungarian.values() if v is not None) == ["a", "b"]
    scores = scgmvae.tl.clustering_scores(components, labels)
    assert scores["accuracy_majority"] == 1.0
    assert scores["accuracy_hungarian"] == pytest.approx(4 / 7)
    assert scores["n_clusters"] == 4
    with pytest.raises(ValueError, match="differ in length"):
        scgmvae.tl.map_components(components, labels[:3])


def test_homogeneity_and_completeness_match_scikit_learn():
    # three pure clusters that split label "b" in two: homogeneous, not complete
    labels = np.array(["a", "a", "b", "b", "b", "b", "c", "c"])
    components = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    scores = scgmvae.tl.clustering_scores(components, labels)
    assert scores["homogeneity"] == pytest.approx(1.0)
    # H(K|C) = 0.5 * ln 2 (cells of b split evenly), H(K) = entropy of (2, 2, 2, 2)/8
    expected_completeness = 1 - 0.5 * np.log(2) / np.log(4)
    assert scores["completeness"] == pytest.approx(expected_completeness)
    assert scores["completeness"] == pytest.approx(metrics.completeness_score(labels, components))
    # one cluster holding everything: complete, not homogeneous
    merged = scgmvae.tl.clustering_scores(np.zeros(8, dtype=int), labels)
    assert merged["completeness"] == pytest.approx(1.0) and merged["homogeneity"] == 0.0
    rng = np.random.default_rng(0)
    random_labels, random_clusters = rng.integers(0, 4, 200), rng.integers(0, 6, 200)
    random = scgmvae.tl.clustering_scores(random_clusters, random_labels)
    for key, sklearn_score in (
        ("homogeneity", metrics.homogeneity_score),
        ("completeness", metrics.completeness_score),
        ("nmi", metrics.normalized_mutual_info_score),
    ):
        assert random[key] == pytest.approx(sklearn_score(random_labels, random_clusters))
