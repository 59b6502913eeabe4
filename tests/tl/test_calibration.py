"""The split-half noise ceiling and the pooled response of other cell types."""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import pytest

import scgmvae

N_GENES = 30


def _cells(n_control: int, n_stimulated: int, seed: int = 0):
    """Counts of control and stimulated cells; stimulation raises ten genes eightfold."""
    rng = np.random.default_rng(seed)
    rates = rng.gamma(2.0, 3.0, N_GENES)
    boost = np.ones(N_GENES)
    boost[:10] = 8.0
    var = pd.DataFrame(index=[f"gene_{i}" for i in range(N_GENES)])

    def sample(n, scale):
        return anndata.AnnData(
            rng.poisson(rates * scale, (n, N_GENES)).astype(np.float32), var=var
        )

    return sample(n_control, np.ones(N_GENES)), sample(n_stimulated, boost)


def test_the_noise_ceiling_is_high_with_many_cells_and_lower_with_few():
    control, stimulated = _cells(200, 400)
    many = scgmvae.tl.noise_ceiling(stimulated, control, n_splits=3, seed=0, n_degs=10)
    expected = scgmvae.tl.evaluate_perturbation(stimulated, stimulated, control, n_degs=10)
    assert list(many.index) == ["prediction", "control"]
    assert list(many.columns) == list(expected.columns)
    ceiling = many.loc["prediction"]
    assert ceiling["pcc_delta_all"] > 0.99 and ceiling["r2_all"] > 0.99
    assert ceiling["sign_accuracy_top_degs"] == 1.0 and ceiling["overlap_top_degs"] == 1.0
    # the control row is the same baseline as in an evaluation: no response
    assert many.loc["control", "pcc_delta_all"] == 0.0
    few_control, few_stimulated = _cells(200, 8)
    few = scgmvae.tl.noise_ceiling(few_stimulated, few_control, n_splits=3, seed=0, n_degs=10)
    for score in ("pcc_delta_all", "r2_all", "r2_var_all"):
        assert few.loc["prediction", score] < ceiling[score]
    assert few.loc["prediction", "e_distance"] > ceiling["e_distance"]


def test_the_noise_ceiling_is_the_mean_of_its_splits():
    control, stimulated = _cells(40, 41)
    degs = scgmvae.tl.top_degs(stimulated, control, n_genes=10)
    kwargs = {"degs": degs, "distances": False}
    ceiling = scgmvae.tl.noise_ceiling(stimulated, control, n_splits=2, seed=7, **kwargs)
    rng = np.random.default_rng(7)
    splits = []
    for _ in range(2):
        order = rng.permutation(41)  # halves of 20, the 41st cell left out
        splits.append(
            scgmvae.tl.evaluate_perturbation(
                stimulated[order[:20]], stimulated[order[20:40]], control, **kwargs
            )
        )
    pd.testing.assert_frame_equal(ceiling, (splits[0] + splits[1]) / 2)


def test_the_noise_ceiling_is_reproducible_with_a_seed_and_runs_without():
    control, stimulated = _cells(30, 30)
    kwargs = {"n_splits": 2, "n_degs": 5, "distances": False}
    first = scgmvae.tl.noise_ceiling(stimulated, control, seed=1, **kwargs)
    pd.testing.assert_frame_equal(
        first, scgmvae.tl.noise_ceiling(stimulated, control, seed=1, **kwargs)
    )
    assert not first.equals(scgmvae.tl.noise_ceiling(stimulated, control, seed=2, **kwargs))
    unseeded = scgmvae.tl.noise_ceiling(stimulated, control, **kwargs)
    assert unseeded.columns.equals(first.columns) and unseeded.notna().all().all()
    with pytest.raises(ValueError, match="at least 4 stimulated cells"):
        scgmvae.tl.noise_ceiling(stimulated[:3], control, **kwargs)


def test_the_pooled_response_by_hand():
    # log-space cells: type A responds by (1, 0, 2), type B by (3, 2, 0), type C (held out) by
    # (10, 10, 10); type D has no stimulated cells and no response
    rows = [
        ("A", "ctrl", [1.0, 1.0, 1.0]),
        ("A", "ctrl", [3.0, 1.0, 1.0]),
        ("A", "stim", [3.0, 1.0, 3.0]),
        ("B", "ctrl", [0.0, 0.5, 0.0]),
        ("B", "stim", [3.0, 2.5, 0.0]),
        ("C", "ctrl", [0.0, 0.0, 0.0]),
        ("C", "stim", [10.0, 10.0, 10.0]),
        ("D", "ctrl", [5.0, 5.0, 5.0]),
    ]
    adata = anndata.AnnData(
        # a quarter added to every value: not integers, so not normalised as counts
        np.array([x for *_, x in rows], dtype=np.float32) + 0.25,
        obs=pd.DataFrame(
            {"type": [t for t, *_ in rows], "condition": [c for _, c, _ in rows]},
            index=[f"cell_{i}" for i in range(len(rows))],
        ),
    )
    adata.var_names = ["g0", "g1", "g2"]
    responses = scgmvae.tl.type_responses(adata, "condition", "ctrl", "stim", "type", "C")
    # D has control cells only, so no response; the types keep their order of appearance
    assert list(responses.index) == ["A", "B"]
    assert list(responses.columns) == ["g0", "g1", "g2"]
    np.testing.assert_allclose(responses.to_numpy(), [[1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
    pooled = scgmvae.tl.pooled_response(adata, "condition", "ctrl", "stim", "type", exclude="C")
    assert list(pooled.index) == ["g0", "g1", "g2"]
    # A: (3, 1, 3) - (2, 1, 1) = (1, 0, 2); B: (3, 2.5, 0) - (0, 0.5, 0) = (3, 2, 0); each
    # type weighs alike, whatever its number of cells
    np.testing.assert_allclose(pooled.to_numpy(), [2.0, 1.0, 1.0])
    every = scgmvae.tl.pooled_response(adata, "condition", "ctrl", "stim", "type")
    np.testing.assert_allclose(every.to_numpy(), [(1 + 3 + 10) / 3, 4.0, 4.0])
    with pytest.raises(ValueError, match="No cell type outside"):
        scgmvae.tl.pooled_response(adata, "condition", "ctrl", "stim", "type", ["A", "B", "C"])
    with pytest.raises(ValueError, match="No cells have condition='stimulated'"):
        scgmvae.tl.pooled_response(adata, "condition", "ctrl", "stimulated", "type")
