"""The model-free rows of the perturbation benchmark on data whose responses are known."""

from __future__ import annotations

import sys
from pathlib import Path

import anndata
import numpy as np
import pandas as pd

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
try:
    import _baselines
finally:
    sys.path.remove(str(BENCHMARKS))

N_GENES, CELLS_PER_GROUP = 60, 400


def _cells(rates: np.ndarray, cell_type: str, condition: str, rng) -> anndata.AnnData:
    counts = rng.poisson(rates, size=(CELLS_PER_GROUP, N_GENES)).astype(np.float32)
    obs = pd.DataFrame(
        {"cell_type": cell_type, "condition": condition},
        index=[f"{cell_type}-{condition}-{i}" for i in range(CELLS_PER_GROUP)],
    )
    return anndata.AnnData(counts, obs=obs)


def test_borrowing_bound_finds_the_combination_of_the_other_types_responses():
    # the held-out type "C" responds like "A" on the first half of the genes and like "B" on
    # the second: the sum of the two responses fits it (weights near 1 each; the weights need
    # not sum to 1), and the unrelated type "D" (responding on other genes) gets no weight
    rng = np.random.default_rng(0)
    base = rng.uniform(20, 60, N_GENES)
    half = N_GENES // 2
    fold = {name: np.ones(N_GENES) for name in "ABCD"}
    fold["A"][:10] = fold["B"][half : half + 10] = 4.0
    fold["C"][:10] = fold["C"][half : half + 10] = 4.0
    fold["D"][20:30] = 4.0
    groups = [_cells(base, name, "control", rng) for name in "ABCD"]
    groups += [_cells(base * fold[name], name, "stimulated", rng) for name in "ABD"]
    train = anndata.concat(groups)
    control = groups[2]
    stimulated = _cells(base * fold["C"], "C", "stimulated", rng)

    responses = _baselines.Responses(train, control)
    bound = _baselines.borrowing_bound(responses, stimulated)
    weights = bound.uns["weights"]
    assert abs(weights["A"] - 1) < 0.15 and abs(weights["B"] - 1) < 0.15, weights
    assert weights["D"] < 0.05, weights
    real = np.log1p(stimulated.X / stimulated.X.sum(1, keepdims=True) * 1e4).mean(0)
    pooled = _baselines.pooled_shift(responses).X.mean(0)
    # closer to the real stimulated mean than the equal-weight pooled shift, which adds D's
    assert np.abs(bound.X.mean(0) - real).sum() < 0.5 * np.abs(pooled - real).sum()
