"""E-distance, MMD and the shared PCA space of scgmvae.tl._distances (pertpy's definitions)."""

from __future__ import annotations

import math

import anndata
import numpy as np
import pytest
from scipy import sparse

from scgmvae.tl._distances import (
    energy_distance,
    mmd,
    perturbation_distances,
    scaled_energy_distance,
    shared_pca,
)


@pytest.fixture
def two_sets():
    rng = np.random.default_rng(0)
    return rng.normal(size=(30, 4)), rng.normal(loc=0.5, size=(20, 4))


def test_energy_distance_by_hand_1d():
    # x = {0, 1}, y = {3}. Between: |0-3| = 3, |1-3| = 2, mean 2.5. Within x over all four
    # ordered pairs (0,0), (0,1), (1,0), (1,1): (0 + 1 + 1 + 0) / 4 = 0.5. Within y: 0.
    # E = 2 * 2.5 - 0.5 - 0 = 4.5
    assert energy_distance([[0.0], [1.0]], [[3.0]]) == pytest.approx(4.5)


def test_energy_distance_by_hand_2d_is_not_squared():
    # x = {(0,0), (3,4)}, y = {(0,0)}. Between: 0 and 5, mean 2.5. Within x: (0 + 5 + 5 + 0) / 4
    # = 2.5. E = 2 * 2.5 - 2.5 - 0 = 2.5 (squared distances would give 2 * 12.5 - 12.5 = 12.5)
    assert energy_distance([[0.0, 0.0], [3.0, 4.0]], [[0.0, 0.0]]) == pytest.approx(2.5)


def test_scaled_energy_distance_by_hand():
    # control {0, 2} scales x to x / 2: stimulated {4} -> {2}, predicted {2} -> {1}.
    # E(stimulated, predicted) = 2 * 1 = 2; E(control unscaled, predicted) = 2 * (1 + 1) / 2
    # - (0 + 2 + 2 + 0) / 4 = 1; ratio 2
    assert scaled_energy_distance([[4.0]], [[2.0]], [[0.0], [2.0]]) == pytest.approx(2.0)
    # a second feature the control cells do not vary (5) is shifted by 5, not scaled:
    # stimulated (4, 7) -> (2, 2), predicted (2, 5) -> (1, 0). E(stimulated, predicted) =
    # 2 * sqrt(5); both control cells are sqrt(26) from (1, 0) and 2 apart, so
    # E(control, predicted) = 2 * sqrt(26) - (0 + 2 + 2 + 0) / 4
    control = [[0.0, 5.0], [2.0, 5.0]]
    assert scaled_energy_distance([[4.0, 7.0]], [[2.0, 5.0]], control) == pytest.approx(
        2 * math.sqrt(5) / (2 * math.sqrt(26) - 1)
    )
    # a prediction that, scaled, is the control set itself: no denominator
    assert math.isnan(scaled_energy_distance([[1.0]], [[0.0]], [[0.0]]))


def test_scaled_energy_distance_is_pertpys_compare_distance(two_sets):
    # pertpy's compare_distance(pert, pred, ctrl, mode="scaled") with its default
    # fit_to_pert_and_ctrl=False: a MinMaxScaler fitted on ctrl transforms pert and pred only
    from sklearn.preprocessing import MinMaxScaler

    stimulated, control = two_sets
    predicted = np.random.default_rng(3).normal(loc=0.3, size=(25, 4))
    scaler = MinMaxScaler().fit(control)
    pert, pred = scaler.transform(stimulated), scaler.transform(predicted)
    expected = energy_distance(pert, pred) / energy_distance(control, pred)
    assert scaled_energy_distance(stimulated, predicted, control) == pytest.approx(expected)


def test_mmd_linear_by_hand():
    # linear kernel: |mean x - mean y|^2 = |1 - 4|^2 = 9
    assert mmd([[0.0], [2.0]], [[4.0]]) == pytest.approx(9.0)
    assert mmd([[0.0], [2.0]], [[4.0]], kernel="linear") == pytest.approx(9.0)


def test_mmd_rbf_by_hand():
    # x = {0}, y = {1}, gamma 1: k(x,x) = k(y,y) = 1, k(x,y) = e^-1: 1 + 1 - 2/e
    assert mmd([[0.0]], [[1.0]], kernel="rbf", gamma=1.0) == pytest.approx(2 - 2 / math.e)
    # x = {0, 1}, y = {0}, gamma 0.5, with a = e^-0.5: mean k(x,x) over (0,0), (0,1), (1,0),
    # (1,1) = (2 + 2a) / 4, k(y,y) = 1, mean k(x,y) = (1 + a) / 2;
    # MMD = (1 + a) / 2 + 1 - (1 + a) = (1 - a) / 2
    a = math.exp(-0.5)
    assert mmd([[0.0], [1.0]], [[0.0]], kernel="rbf", gamma=0.5) == pytest.approx((1 - a) / 2)


def test_mmd_poly_by_hand():
    # x = {1}, y = {2}, gamma 1, degree 2: k = (a.b)^2 -> 1 + 16 - 2 * 4 = 9
    assert mmd([[1.0]], [[2.0]], kernel="poly", gamma=1.0, degree=2) == pytest.approx(9.0)


@pytest.mark.parametrize(
    ("distance", "kwargs"),
    [
        (energy_distance, {}),
        (mmd, {}),
        (mmd, {"kernel": "rbf", "gamma": 0.3}),
        (mmd, {"kernel": "poly", "gamma": 0.5, "degree": 3}),
    ],
)
def test_symmetric_zero_on_itself_and_positive(two_sets, distance, kwargs):
    x, y = two_sets
    assert distance(x, y, **kwargs) == pytest.approx(distance(y, x, **kwargs))
    assert distance(x, x.copy(), **kwargs) == pytest.approx(0.0, abs=1e-10)
    assert distance(x, y, **kwargs) > 0


def test_blocks_and_sparse_give_the_same_value(two_sets, monkeypatch):
    import scgmvae.tl._distances as distances

    x, y = two_sets
    whole = energy_distance(x, y)
    monkeypatch.setattr(distances, "_BLOCK_ROWS", 7)  # several blocks, the last one partial
    assert energy_distance(x, y) == pytest.approx(whole)
    assert energy_distance(sparse.csr_matrix(x), y) == pytest.approx(whole)


def test_errors():
    with pytest.raises(ValueError, match="features"):
        energy_distance(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="no cells"):
        mmd(np.zeros((0, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="kernel"):
        mmd(np.zeros((2, 3)), np.zeros((2, 3)), kernel="cosine")
    with pytest.raises(ValueError, match="features"):
        scaled_energy_distance(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 4)))


def test_shared_pca_is_fitted_on_the_reference_only():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(12, 6))
    other = rng.normal(size=(5, 6)) + 100.0
    ref_pcs, other_pcs = shared_pca(reference, other, n_comps=50)
    assert ref_pcs.shape == (12, 6)  # capped at the number of genes
    assert shared_pca(reference[:4], n_comps=50)[0].shape == (4, 3)  # and at cells - 1
    np.testing.assert_allclose(ref_pcs.mean(0), 0.0, atol=1e-10)  # centred on the reference
    # all components kept: a rotation, so distances between cells are those in gene space
    np.testing.assert_allclose(
        np.linalg.norm(other_pcs[0] - ref_pcs[0]), np.linalg.norm(other[0] - reference[0])
    )
    # the other cells did not move the axes
    assert np.allclose(shared_pca(reference, other * 3)[0], ref_pcs)


def test_shared_pca_reuses_the_axes_of_the_same_reference_only(monkeypatch):
    import scgmvae.tl._distances as distances

    svds = []
    svd = np.linalg.svd
    monkeypatch.setattr(distances.np.linalg, "svd", lambda *a, **k: svds.append(1) or svd(*a, **k))
    monkeypatch.setattr(distances, "_AXES_CACHE", {})
    rng = np.random.default_rng(3)
    reference, other = rng.normal(size=(20, 8)), rng.normal(size=(6, 8))
    first = shared_pca(reference, other, n_comps=3)
    again = shared_pca(reference.copy(), other, n_comps=3)
    assert len(svds) == 1  # equal values: one SVD
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    changed = reference.copy()
    changed[0, 0] += 1.0
    moved = shared_pca(changed, other, n_comps=3)
    assert len(svds) == 2  # one changed value: new axes
    assert not np.allclose(moved[1], first[1])
    for _ in range(distances._AXES_CACHE_SIZE + 2):  # the cache stays bounded
        shared_pca(rng.normal(size=(20, 8)), n_comps=3)
    assert len(distances._AXES_CACHE) == distances._AXES_CACHE_SIZE


def test_perturbation_distances_score_a_perfect_prediction_zero():
    rng = np.random.default_rng(2)
    genes = [f"g{i}" for i in range(8)]
    control = anndata.AnnData(rng.poisson(3.0, size=(15, 8)).astype(np.float32))
    stimulated = anndata.AnnData(rng.poisson(6.0, size=(10, 8)).astype(np.float32))
    for adata in (control, stimulated):
        adata.var_names = genes
    scores = perturbation_distances(stimulated.copy(), stimulated, control, n_comps=5)
    assert list(scores.index) == ["prediction", "control"]
    assert list(scores.columns) == ["e_distance", "mmd", "e_distance_scaled"]
    assert scores.loc["prediction"].to_numpy() == pytest.approx([0.0, 0.0, 0.0], abs=1e-10)
    assert (scores.loc["control"] > 0).all()


def test_perturbation_distances_need_the_same_genes():
    cells = anndata.AnnData(np.ones((3, 2), dtype=np.float32))
    cells.var_names = ["a", "b"]
    other = cells[:, ["b", "a"]].copy()
    with pytest.raises(ValueError, match="other genes"):
        perturbation_distances(other, cells, cells)
