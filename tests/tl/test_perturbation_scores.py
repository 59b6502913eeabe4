"""The scGen-protocol and distribution scores of evaluate_perturbation on known cases."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest

import scgmvae

N_CELLS, N_GENES = 80, 30


@pytest.fixture
def cells():
    """Counts of control and stimulated cells; stimulation raises the first ten genes."""
    rng = np.random.default_rng(0)
    rates = rng.gamma(2.0, 3.0, N_GENES)
    boost = np.ones(N_GENES)
    boost[:10] = 4.0
    var = pd.DataFrame(index=[f"gene_{i}" for i in range(N_GENES)])

    def sample(scale):
        return anndata.AnnData(
            rng.poisson(rates * scale, (N_CELLS, N_GENES)).astype(np.float32), var=var
        )

    return sample(np.ones(N_GENES)), sample(boost), sample(boost)


def test_a_real_sample_scores_like_the_truth(cells):
    control, stimulated, another = cells
    scores = scgmvae.tl.evaluate_perturbation(another, stimulated, control, n_degs=10)
    assert list(scores.columns) == [
        "r2_all",
        "r2_top_degs",
        "r2_lfc_top_degs",
        "r2_var_all",
        "e_distance",
        "mmd",
    ]
    prediction, baseline = scores.loc["prediction"], scores.loc["control"]
    assert prediction["r2_all"] > 0.95 and prediction["r2_lfc_top_degs"] > 0.8
    assert baseline["r2_lfc_top_degs"] == 0.0
    assert prediction["e_distance"] < 0.2 * baseline["e_distance"]
    assert prediction["mmd"] < 0.2 * baseline["mmd"]
    same = scgmvae.tl.evaluate_perturbation(stimulated, stimulated, control, n_degs=10)
    assert same.loc["prediction", "e_distance"] == pytest.approx(0.0, abs=1e-9)
    assert same.loc["prediction", "r2_var_all"] == pytest.approx(1.0)


def test_a_collapsed_prediction_is_caught_by_the_distribution_scores(cells):
    control, stimulated, another = cells
    # every predicted cell is the real cells' mean profile: right means, no spread
    collapsed = scgmvae.tl.log_normalize(another).copy()
    collapsed.X = np.tile(np.asarray(collapsed.X).mean(0), (N_CELLS, 1))
    sampled = scgmvae.tl.evaluate_perturbation(another, stimulated, control, n_degs=10)
    mean_only = scgmvae.tl.evaluate_perturbation(collapsed, stimulated, control, n_degs=10)
    # the means are as good as a real sample's ...
    assert mean_only.loc["prediction", "r2_all"] == pytest.approx(
        sampled.loc["prediction", "r2_all"], abs=0.02
    )
    # ... but the spread is gone: no variance to correlate, a larger E-distance
    assert mean_only.loc["prediction", "r2_var_all"] == 0.0
    assert mean_only.loc["prediction", "e_distance"] > 3 * sampled.loc["prediction", "e_distance"]


def test_distances_can_be_left_out(cells):
    control, stimulated, another = cells
    scores = scgmvae.tl.evaluate_perturbation(
        another, stimulated, control, n_degs=10, distances=False
    )
    assert "e_distance" not in scores and "r2_var_all" in scores
