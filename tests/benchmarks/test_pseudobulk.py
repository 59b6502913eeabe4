"""The pseudobulk DE of the perturbation benchmark on counts whose DEGs are known."""

from __future__ import annotations

import sys
from pathlib import Path

import anndata
import numpy as np
import pandas as pd

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
try:
    import _pseudobulk
finally:
    sys.path.remove(str(BENCHMARKS))

N_GENES, N_RESPONDING, N_DONORS, CELLS_PER_DONOR = 400, 20, 6, 60


def _donor_baselines(rng) -> np.ndarray:
    """Donors x genes: each donor's own expression level of every gene."""
    return rng.gamma(5.0, 1.0, N_GENES) * rng.lognormal(0.0, 0.2, (N_DONORS, N_GENES))


def _cells(baselines: np.ndarray, fold: np.ndarray, rng) -> anndata.AnnData:
    """Cells of every donor at its baseline, the genes scaled by ``fold``."""
    counts = np.vstack(
        [rng.poisson(level * fold, size=(CELLS_PER_DONOR, N_GENES)) for level in baselines]
    )
    donors = np.repeat([f"d{donor}" for donor in range(N_DONORS)], CELLS_PER_DONOR)
    obs = pd.DataFrame({"donor": donors}, index=[f"c{i}" for i in range(len(donors))])
    return anndata.AnnData(counts.astype(np.float32), obs=obs)


def test_pseudobulk_degs_and_their_split_half_overlap_follow_the_response():
    # the first 20 genes respond three-fold: the pseudobulk test finds them, and two halves of
    # the stimulated cells agree on them; without a response the halves' lists are noise
    rng = np.random.default_rng(0)
    baselines = _donor_baselines(rng)
    responding = np.ones(N_GENES)
    responding[:N_RESPONDING] = 3.0
    control = _cells(baselines, np.ones(N_GENES), rng)
    stimulated = _cells(baselines, responding, rng)
    found = _pseudobulk.pseudobulk_top_degs(stimulated, control, "donor", N_RESPONDING)
    assert len(set(found) & set(stimulated.var_names[:N_RESPONDING])) >= N_RESPONDING - 1

    agree = _pseudobulk.split_half_overlap(
        stimulated, control, "donor", seed=0, n_genes=N_RESPONDING
    )
    assert agree >= 0.9
    unchanged = _cells(baselines, np.ones(N_GENES), rng)
    noise = _pseudobulk.split_half_overlap(
        unchanged, control, "donor", seed=0, n_genes=N_RESPONDING
    )
    assert noise < 0.5
