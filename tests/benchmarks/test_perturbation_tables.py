"""The perturbation benchmark's tables: a peer missing on one held-out type moves no mean."""

from __future__ import annotations

import sys
from pathlib import Path

import anndata
import numpy as np
import pandas as pd

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
try:
    import perturbation
finally:
    sys.path.remove(str(BENCHMARKS))

SCORES = {  # (held-out type, method): LFC R²; the peer did not run on the second type
    ("B", "CGMVAE"): 0.9,
    ("B", "peer"): 0.8,
    ("CD14 Mono", "CGMVAE"): 0.5,
}


def _frame() -> pd.DataFrame:
    rows = [
        {"cell_type": t, "seed": 0, "method": m, "r2_lfc_top_degs": v, "train_seconds": 1.0}
        for (t, m), v in SCORES.items()
    ]
    return pd.DataFrame(rows)


def test_complete_types_are_those_every_method_ran_on():
    assert perturbation.complete_types(_frame()) == ["B"]


def test_means_over_types_leave_out_a_type_a_method_is_missing_on():
    frame = _frame()
    _, summary, per_type = perturbation._tables(frame)
    assert summary.loc["CGMVAE", "r2_lfc_top_degs"] == 0.9
    assert summary.loc["peer", "r2_lfc_top_degs"] == 0.8
    # the per-type table keeps every type and method that ran
    assert ("CD14 Mono", "CGMVAE") in per_type.index
    assert ("CD14 Mono", "peer") not in per_type.index
    wide = perturbation._wide(frame, "r2_lfc_top_degs")
    assert wide.loc["mean", "CGMVAE"] == 0.9
    assert wide.loc["CD14 Mono", "CGMVAE"] == 0.5


def test_every_type_counts_when_every_method_ran():
    frame = pd.concat(
        [_frame(), _frame().iloc[[1]].assign(cell_type="CD14 Mono", r2_lfc_top_degs=0.6)]
    )
    assert perturbation.complete_types(frame) == ["B", "CD14 Mono"]
    _, summary, _ = perturbation._tables(frame)
    assert summary.loc["CGMVAE", "r2_lfc_top_degs"] == 0.7


def test_stored_peers_only_takes_stored_predictions_and_trains_none(tmp_path, monkeypatch):
    def train_peer(*args, **kwargs):
        raise AssertionError("a peer was trained")

    monkeypatch.setattr(perturbation, "run_peer", train_peer)
    monkeypatch.setattr(perturbation._cache, "CACHE_DIR", tmp_path)
    cells = anndata.AnnData(np.ones((3, 2), dtype=np.float32))
    args = (cells, cells, 0, False, "data-key", {})
    assert perturbation._peer_predictions(*args, stored_only=True) == {}

    stored = cells.copy()
    stored.uns["train_seconds"] = 5.0
    scpram = perturbation.PEERS["scpram"]
    key = perturbation._cache.digest("scpram", "data-key", 0, False, scpram.script)
    stored.write_h5ad(tmp_path / f"{key}.h5ad")
    predictions = perturbation._peer_predictions(*args, stored_only=True)
    assert list(predictions) == [scpram.label]
    assert predictions[scpram.label].uns["train_seconds"] == 5.0


def test_published_means_take_the_complete_types_beside_the_published_means():
    frame = _frame().rename(columns={"r2_lfc_top_degs": "pcc_delta_top_degs"})
    note = perturbation.published_means(frame)
    # the peer did not run on CD14 Mono, so the mean is B's alone
    assert note.startswith("Mean over the 1 type here: CGMVAE 0.900.")
    for method, value in perturbation.SCPERTURBENCH_PUBLISHED.items():
        assert f"{method} {value:.3f}" in note


def test_published_means_put_the_peers_that_ran_beside_their_published_means():
    frame = _frame().rename(columns={"r2_lfc_top_degs": "pcc_delta_top_degs"})
    frame["method"] = frame["method"].replace({"peer": "scGen"})
    note = perturbation.published_means(frame)
    assert note.startswith("Mean over the 1 type here: CGMVAE 0.900, scGen 0.800.")
