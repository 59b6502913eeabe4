import anndata
import numpy as np
import pandas as pd
import pytest

import scgmvae


def _cells(rng, means, n, prefix):
    """Poisson counts around per-gene ``means``: cells of one kind."""
    counts = rng.poisson(means, size=(n, len(means))).astype(np.float32)
    return anndata.AnnData(
        counts,
        obs=pd.DataFrame(index=[f"{prefix}_{i}" for i in range(n)]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(len(means))]),
    )


@pytest.fixture
def kinds():
    rng = np.random.default_rng(0)
    means = rng.gamma(0.8, 4.0, size=60)
    other = means.copy()
    other[:20] = other[:20] * 4 + 2  # a third of the genes higher: another kind of cell
    return rng, means, other


def test_cells_of_the_same_kind_pass_for_real(kinds):
    rng, means, _ = kinds
    real = _cells(rng, means, 300, "real")
    same = _cells(rng, means, 250, "synthetic")
    scores = scgmvae.tl.generation_scores(same, real)
    assert set(scores.index) == {
        "classifier_auc",
        "classifier_auc_forest",
        "e_distance",
        "e_distance_real_split",
        "e_distance_ratio",
        "r2_mean",
        "r2_var",
        "r2_zero_fraction",
    }
    assert 0.4 < scores["classifier_auc"] < 0.62
    assert 0.4 < scores["classifier_auc_forest"] < 0.62
    assert 0.5 < scores["e_distance_ratio"] < 1.6
    assert scores["r2_mean"] > 0.95
    assert scores["r2_zero_fraction"] > 0.95


def test_cells_of_another_kind_or_without_noise_are_caught(kinds):
    rng, means, other = kinds
    real = _cells(rng, means, 300, "real")
    shifted = scgmvae.tl.generation_scores(_cells(rng, other, 300, "synthetic"), real)
    assert shifted["classifier_auc"] > 0.95
    assert shifted["e_distance_ratio"] > 5
    # the expected counts themselves: right means, but no zeros and no spread
    smooth = anndata.AnnData(
        np.tile(means, (300, 1)).astype(np.float32) + 0.5, var=real.var.copy()
    )
    smooth.obs_names = [f"smooth_{i}" for i in range(300)]
    scores = scgmvae.tl.generation_scores(smooth, real)
    assert scores["classifier_auc"] > 0.95
    assert scores["r2_zero_fraction"] < 0.5 or np.isnan(scores["r2_zero_fraction"])


def test_the_forest_catches_the_right_centre_with_too_much_spread(kinds):
    rng, means, _ = kinds
    real = _cells(rng, means, 300, "real")
    real.X = np.log1p(real.X)  # log-normalised values are scored as they are
    # the same centre, twice the spread: no linear boundary sets the two sets apart
    centre = real.X.mean(0)
    spread = _cells(rng, means, 300, "synthetic")
    spread.X = centre + 2 * (np.log1p(spread.X) - centre)
    scores = scgmvae.tl.generation_scores(spread, real)
    assert scores["classifier_auc"] < 0.7
    assert scores["classifier_auc_forest"] > 0.9


def test_the_same_seed_gives_the_same_scores(kinds):
    rng, means, other = kinds
    real, synthetic = _cells(rng, means, 120, "real"), _cells(rng, other, 90, "synthetic")
    first = scgmvae.tl.generation_scores(synthetic, real, random_state=3)
    pd.testing.assert_series_equal(
        first, scgmvae.tl.generation_scores(synthetic, real, random_state=3)
    )


def test_errors_name_the_problem(kinds):
    rng, means, _ = kinds
    real = _cells(rng, means, 50, "real")
    with pytest.raises(ValueError, match="at least 10 synthetic cells, got 4"):
        scgmvae.tl.generation_scores(real[:4].copy(), real)
    with pytest.raises(ValueError, match="other genes"):
        scgmvae.tl.generation_scores(real[:, :30].copy(), real)
