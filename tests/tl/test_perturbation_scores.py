"""The scGen-protocol, distribution and calibrated scores of evaluate_perturbation on known
cases."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest

import scgmvae

N_CELLS, N_GENES = 80, 30
CALIBRATED = [
    "pcc_delta_all",
    "pcc_delta_top_degs",
    "sign_accuracy_top_degs",
    "overlap_top_degs",
]


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
        *CALIBRATED,
        "e_distance",
        "mmd",
        "e_distance_scaled",
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


def _log_cells(means, spread=0.1) -> anndata.AnnData:
    """Two log-space cells per group, ``means`` plus and minus ``spread``."""
    means = np.asarray(means, dtype=np.float64)
    # float32 like log-normalised counts, so scanpy's Wilcoxon needs no further compilation
    adata = anndata.AnnData(np.vstack([means + spread, means - spread]).astype(np.float32))
    adata.var_names = [f"g{i}" for i in range(len(means))]
    return adata


def test_a_perfect_prediction_and_a_copy_of_the_control(cells):
    control, stimulated, _ = cells
    scores = scgmvae.tl.evaluate_perturbation(stimulated, stimulated, control, n_degs=10)
    # the real cells predict their own response exactly, and find their own DEGs
    assert scores.loc["prediction", CALIBRATED].to_numpy() == pytest.approx([1.0] * 4)
    # the control cells have no response: a zero response correlates 0, has no sign and no DEGs
    assert scores.loc["control", CALIBRATED].to_numpy() == pytest.approx([0.0] * 4)


def test_a_flipped_response_scores_minus_one_and_no_sign_right(cells):
    control, stimulated, _ = cells
    ctrl = np.asarray(scgmvae.tl.log_normalize(control).X, dtype=np.float64)
    stim = np.asarray(scgmvae.tl.log_normalize(stimulated).X, dtype=np.float64)
    # every real stimulated cell reflected through the control mean: response -(stim - ctrl)
    flipped = anndata.AnnData((2 * ctrl.mean(0) - stim).astype(np.float32), var=stimulated.var)
    scores = scgmvae.tl.evaluate_perturbation(flipped, stimulated, control, n_degs=10)
    prediction = scores.loc["prediction"]
    assert prediction["pcc_delta_all"] == pytest.approx(-1.0)
    assert prediction["pcc_delta_top_degs"] == pytest.approx(-1.0)
    assert prediction["r2_lfc_top_degs"] == pytest.approx(1.0)  # R² cannot tell the direction
    assert prediction["sign_accuracy_top_degs"] == 0.0
    # the boosted genes are the real DEGs; the flipped cells lower them, so rank them last
    assert prediction["overlap_top_degs"] == 0.0


def test_the_control_reference_sets_the_responses_by_hand():
    # group means: reference 0, input control (1.5, 0, 0, 0), stimulated (1, 2, 3, 4) and
    # prediction (2, 1, 3, 4); all four genes are the DEGs
    genes = ["g0", "g1", "g2", "g3"]
    reference = _log_cells([0.0, 0.0, 0.0, 0.0])
    control = _log_cells([1.5, 0.0, 0.0, 0.0])
    stimulated = _log_cells([1.0, 2.0, 3.0, 4.0])
    predicted = _log_cells([2.0, 1.0, 3.0, 4.0])
    split = scgmvae.tl.evaluate_perturbation(
        predicted, stimulated, control, degs=genes, distances=False, control_reference=reference
    )
    # vs the reference: predicted (2, 1, 3, 4) and real (1, 2, 3, 4) responses, deviations
    # (-.5, -1.5, .5, 1.5) and (-1.5, -.5, .5, 1.5) from their mean 2.5: r = 4 / 5
    assert split.loc["prediction", "pcc_delta_all"] == pytest.approx(0.8)
    assert split.loc["prediction", "pcc_delta_top_degs"] == pytest.approx(0.8)
    assert split.loc["prediction", "r2_lfc_top_degs"] == pytest.approx(0.64)
    assert split.loc["prediction", "sign_accuracy_top_degs"] == 1.0
    # the input control now has a response of its own, (1.5, 0, 0, 0): one sign right
    assert split.loc["control", "pcc_delta_all"] == pytest.approx(
        np.corrcoef([1.5, 0, 0, 0], [1, 2, 3, 4])[0, 1]
    )
    assert split.loc["control", "sign_accuracy_top_degs"] == 0.25
    # vs the input control: predicted (0.5, 1, 3, 4), real (-0.5, 2, 3, 4), one sign wrong
    plain = scgmvae.tl.evaluate_perturbation(
        predicted, stimulated, control, degs=genes, distances=False
    )
    expected = np.corrcoef([0.5, 1, 3, 4], [-0.5, 2, 3, 4])[0, 1]
    assert plain.loc["prediction", "pcc_delta_all"] == pytest.approx(expected)
    assert plain.loc["prediction", "r2_lfc_top_degs"] == pytest.approx(expected**2)
    assert plain.loc["prediction", "sign_accuracy_top_degs"] == 0.75
    # the means themselves do not depend on the reference
    assert split.loc["prediction", "r2_all"] == plain.loc["prediction", "r2_all"]


def test_the_type_specific_part_by_hand():
    genes = ["g0", "g1", "g2", "g3"]
    reference = _log_cells([0.0, 0.0, 0.0, 0.0])
    control = _log_cells([1.5, 0.0, 0.0, 0.0])
    stimulated = _log_cells([1.0, 2.0, 3.0, 4.0])
    predicted = _log_cells([2.0, 1.0, 3.0, 4.0])
    pooled = np.array([0.0, 0.0, 2.0, 4.0])
    kwargs = {"degs": genes, "distances": False, "control_reference": reference}
    scores = scgmvae.tl.evaluate_perturbation(
        predicted, stimulated, control, pooled_response=pooled, **kwargs
    )
    # responses minus the pooled one: predicted (2, 1, 1, 0), real (1, 2, 1, 0); deviations
    # (1, 0, 0, -1) and (0, 1, 0, -1) from their mean 1: r = 1 / 2
    assert scores.loc["prediction", "pcc_type_specific_top_degs"] == pytest.approx(0.5)
    # the input control's response (1.5, 0, 0, 0) minus the pooled one
    assert scores.loc["control", "pcc_type_specific_top_degs"] == pytest.approx(
        np.corrcoef([1.5, 0, -2, -4], [1, 2, 1, 0])[0, 1]
    )
    assert list(scores.columns)[-1] == "pcc_type_specific_top_degs"
    # a Series is aligned by gene name, whatever its order
    by_name = pd.Series(pooled, index=genes).iloc[::-1]
    same = scgmvae.tl.evaluate_perturbation(
        predicted, stimulated, control, pooled_response=by_name, **kwargs
    )
    pd.testing.assert_frame_equal(same, scores)
    with pytest.raises(ValueError, match="one value per gene"):
        scgmvae.tl.evaluate_perturbation(
            predicted, stimulated, control, pooled_response=pooled[:3], **kwargs
        )
    with pytest.raises(ValueError, match="no value for 1 genes"):
        scgmvae.tl.evaluate_perturbation(
            predicted, stimulated, control, pooled_response=by_name.iloc[1:], **kwargs
        )


def test_the_control_reference_needs_the_same_genes(cells):
    control, stimulated, another = cells
    with pytest.raises(ValueError, match="control_reference cells have other genes"):
        scgmvae.tl.evaluate_perturbation(
            another, stimulated, control, control_reference=control[:, ::-1].copy()
        )
