"""Held-out donors: predict a new patient's stimulated cells from its control cells.

On the full-size Kang data (``kang_ifnb_6donors.h5ad`` from ``$SCGMVAE_DATA_DIR``, 2,000 HVGs),
each of the six donors is left out in turn: the model trains on every cell except that donor's
stimulated cells (its control cells stay in, as a new sample's control cells would be
measured), then predicts the donor's stimulated cells from its control cells. Each cell type
with at least ``MIN_STIMULATED_CELLS`` stimulated cells in the donor is scored on its own with
``scgmvae.tl.evaluate_perturbation``. Rows, on the same folds and seeds:

- CGMVAE with the donor as its batch covariate, ``predict_perturbation``'s defaults, and the
  same model's decoded cells (``route="z"``: each control cell's ``z`` moved by its type's
  latent response and decoded under the donor's batch);
- the per-type mean shift: the donor's control cells of the type plus the type's mean response
  (stimulated - control, log1p CP10k) in the other donors, without any model;
- the per-type quantile shift: each of the donor's control cells moved, gene by gene, by the
  type's quantile response in the training cells (``_baselines.quantile_shift``), without any
  model; CGMVAE's default route makes this move for every type it has seen under both
  conditions, from the same training cells;
- pertpy's scGen through ``benchmarks/_peers.py``, as many epochs as the full-size perturbation
  benchmark gives it (skipped with a message when its Python is not set up);
- the donor's control cells, and the split-half noise ceiling of the donor's real stimulated
  cells (``scgmvae.tl.noise_ceiling``).

    python benchmarks/perturbation_donors.py --max-epochs 100 --seeds 1
    python benchmarks/perturbation_donors.py --smoke   # 832-cell file, two pseudo-donors (CI)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import _cache
import numpy as np
import pandas as pd
from _baselines import Responses, quantile_shift
from _common import RESULTS, kang, mean_sd, setup_threads, write_section
from _peers import PEERS, run_peer, skip_message
from perturbation import (
    CEILING_ROW,
    CONTROL_ROW,
    FULL_PEER_EPOCHS,
    cgmvae_predictions,
    figure,
)

import scgmvae

CONDITION, CTRL, STIM, LABEL, DONOR = "condition", "control", "stimulated", "cell_type", "donor"
MIN_STIMULATED_CELLS = 30
"""Cell types of a donor with fewer stimulated cells are not scored (too few for their DEGs)."""
NOISE_CEILING_SPLITS = 3
DONOR_SPECIFIC = "pcc_donor_specific_top_degs"
HEADLINE = ("r2_top_degs", "r2_lfc_top_degs", "pcc_delta_top_degs", DONOR_SPECIFIC, "e_distance")
FIGURE_PANELS = {
    "r2_lfc_top_degs": "LFC R² on the top-100 DEGs",
    DONOR_SPECIFIC: "donor-specific PCC-delta on the top-100 DEGs\n"
    "(after removing the type's response in the other donors)",
}
MEAN_SHIFT = "per-type mean shift (other donors)"
QUANTILE_SHIFT = "per-type quantile shift (training cells)"
MODEL_FREE = (MEAN_SHIFT, QUANTILE_SHIFT)
CGMVAE_ROWS = {"CGMVAE": {}, "CGMVAE route z": {"route": "z"}}
"""CGMVAE's rows: ``predict_perturbation`` keyword arguments by row name (one model each fold)."""
SMOKE_DONORS = 2
"""The smoke run splits the 832 cells (which have no donors) into this many pseudo-donors."""


def _peers(train, control, seed: int, smoke: bool, key: str) -> dict:
    predictions = {}
    for name, peer in PEERS.items():
        if name != "scgen":  # the donor benchmark compares with scGen only (issue 23)
            continue
        epochs = FULL_PEER_EPOCHS.get(name)
        predicted = _cache.cached(
            _cache.digest(name, "donors", key, seed, smoke, peer.script, epochs),
            lambda name=name, epochs=epochs: run_peer(
                name, train, control, seed=seed, smoke=smoke, max_epochs=epochs
            ),
        )
        if predicted is None:
            print(skip_message(name), flush=True)
            continue
        predictions[peer.label] = predicted
    return predictions


def run_fold(adata, donor: str, seed: int, max_epochs: int, smoke: bool) -> list[dict]:
    """Scores of every method for each scored cell type of one held-out donor."""
    of_donor = adata.obs[DONOR] == donor
    held_out = of_donor & (adata.obs[CONDITION] == STIM)
    train = adata[~held_out].copy()
    control = adata[of_donor & (adata.obs[CONDITION] == CTRL)].copy()
    stimulated = adata[held_out].copy()
    key = _cache.data_digest(train, control)
    predictions = cgmvae_predictions(
        train, control, seed, max_epochs, key, CGMVAE_ROWS, setup={"batch_key": DONOR}
    )
    predictions.update(_peers(train, control, seed, smoke, key))
    other_donors = train[train.obs[DONOR] != donor]
    rows = []
    counts = stimulated.obs[LABEL].value_counts()
    for cell_type in sorted(counts.index[counts >= MIN_STIMULATED_CELLS]):
        real = stimulated[stimulated.obs[LABEL] == cell_type]
        in_type = (control.obs[LABEL] == cell_type).to_numpy()
        if not in_type.any():
            continue
        type_control = control[in_type]
        degs = scgmvae.tl.top_degs(real, type_control, n_genes=100)
        responses = Responses(other_donors, type_control)
        other_donors_response = responses.responses.loc[cell_type]
        methods = {name: predicted[in_type] for name, predicted in predictions.items()}
        methods[MEAN_SHIFT] = responses.shifted(other_donors_response.to_numpy())
        methods[QUANTILE_SHIFT] = quantile_shift(train, type_control, cell_type, seed)
        # the part of the response that is this donor's own: evaluate_perturbation's
        # type-specific score, with the type's response in the other donors removed
        reference = {"degs": degs, "pooled_response": other_donors_response}
        common = {"donor": donor, "cell_type": cell_type, "seed": seed}
        for method, predicted in methods.items():
            scores = scgmvae.tl.evaluate_perturbation(predicted, real, type_control, **reference)
            row = {**common, "method": method, **_renamed(scores.loc["prediction"])}
            if method == MEAN_SHIFT:  # its response is the other donors': it has no own part
                row[DONOR_SPECIFIC] = np.nan
            rows.append(row)
        rows.append({**common, "method": CONTROL_ROW, **_renamed(scores.loc["control"])})
        ceiling = scgmvae.tl.noise_ceiling(
            real, type_control, n_splits=NOISE_CEILING_SPLITS, seed=seed, **reference
        )
        rows.append({**common, "method": CEILING_ROW, **_renamed(ceiling.loc["prediction"])})
    return rows


def _renamed(scores: pd.Series) -> dict:
    return scores.rename({"pcc_type_specific_top_degs": DONOR_SPECIFIC}).to_dict()


def _per_donor(frame: pd.DataFrame) -> pd.DataFrame:
    """LFC R² per cell type and held-out donor (rows) and method (columns), mean over seeds."""
    methods = [m for m in dict.fromkeys(frame["method"]) if m != CONTROL_ROW]
    wide = frame.pivot_table(
        index=["cell_type", "donor"], columns="method", values="r2_lfc_top_degs", aggfunc="mean"
    )
    return wide[[m for m in methods if m in wide]].round(3)


def _tables(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per type (mean over donors, each seed's donor mean listed) and the wins per type."""
    by_seed = frame.groupby(["cell_type", "method", "seed"])[list(HEADLINE)].mean()
    per_type = by_seed.groupby(level=["cell_type", "method"]).agg(
        {metric: lambda v: mean_sd(v) for metric in HEADLINE}
    )
    means = by_seed.groupby(level=["cell_type", "method"]).mean()["r2_lfc_top_degs"].unstack()
    rivals = [m for m in means.columns if m not in ("CGMVAE", CONTROL_ROW, CEILING_ROW)]
    wins = pd.DataFrame(
        {
            "CGMVAE LFC R²": means["CGMVAE"],
            "best other": means[rivals].idxmax(1),
            "best other (LFC R²)": means[rivals].max(1),
            # + 0.0 turns a rounded -0.0 into 0.0
            "CGMVAE minus best other": (means["CGMVAE"] - means[rivals].max(1)).round(3) + 0.0,
            CEILING_ROW: means[CEILING_ROW],
        }
    )
    return per_type, wins


def _smoke_data():
    """The 832 cells with two pseudo-donors (every other cell), on 200 HVGs."""
    adata = kang(n_top_genes=200)
    adata.obs[DONOR] = np.where(np.arange(adata.n_obs) % SMOKE_DONORS == 0, "d0", "d1")
    return adata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny run that checks the code")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--donors", nargs="*", default=None)
    args = parser.parse_args()
    setup_threads()
    if args.smoke:
        os.environ[_cache.CACHE_ENV] = "0"  # smoke runs check the code and keep nothing
        adata, epochs, seeds = _smoke_data(), 2, range(1)
    else:
        adata, epochs, seeds = kang(full=True), args.max_epochs, range(args.seeds)
    donors = args.donors or sorted(adata.obs[DONOR].astype(str).unique())
    if args.smoke:
        donors = donors[:1]
    rows = []
    for donor in donors:
        for seed in seeds:
            fold = run_fold(adata, donor, seed, epochs, args.smoke)
            rows.extend(fold)
            columns = ["donor", "cell_type", "method", *HEADLINE]
            print(pd.DataFrame(fold)[columns].round(3).to_string(), flush=True)
    frame = pd.DataFrame(rows)
    per_type, wins = _tables(frame)
    title = f"{len(donors)} held-out donors, {len(seeds)} seed{'s' * (len(seeds) > 1)}"
    if args.smoke:
        print(per_type.to_string(), wins.to_string(), sep="\n\n")
        with tempfile.TemporaryDirectory() as folder:
            figure(frame, Path(folder) / "figure.png", title, FIGURE_PANELS, model_free=MODEL_FREE)
            print("figure written", flush=True)
        return
    image = "_static/perturbation_donors.png"
    figure(
        frame,
        RESULTS.parent / image,
        f"Kang 6 donors, {adata.n_vars:,} HVGs: each donor's stimulated cells held out ({title}, "
        f"{epochs} epochs)",
        FIGURE_PANELS,
        model_free=MODEL_FREE,
    )
    lead = (  # the image's path is relative to the page, in docs/benchmarks/
        f"![Per cell type, each method's scores on held-out donors](../{image})\n\n"
        "Per cell type: each method's score, mean over the held-out donors in which the type "
        f"has at least {MIN_STIMULATED_CELLS} stimulated cells (large dot: mean over seeds; "
        "ticks: each seed), the noise ceiling as a black bar (half of the donor's real "
        "stimulated cells predicting the other half); the bottom row is the mean over the "
        "types. Left: R² of predicted vs real log fold-changes on the top-100 DEGs; right: "
        "the Pearson r of the responses after the type's mean response in the other donors is "
        "removed from both (the part of the response that is the donor's own; the per-type "
        "mean shift has none: not shown there, blank in the tables). Not shown: the control "
        "(0 on the left) and CGMVAE's decoded cells (route z; in the tables)."
    )
    options = f" --donors {' '.join(args.donors)}" if args.donors else ""
    write_section(
        "perturbation_donors",
        f"Held-out donors (Kang 6 donors, {adata.n_obs:,} cells, {adata.n_vars:,} HVGs)",
        f"python benchmarks/perturbation_donors.py --max-epochs {epochs} "
        f"--seeds {len(seeds)}{options}",
        per_type,
        "Each cell type: mean over the held-out donors in which it has at least "
        f"{MIN_STIMULATED_CELLS} stimulated cells, mean ± sd over seeds (each seed's donor "
        "mean listed). CGMVAE's LFC R² against the best other method's, per type:\n\n"
        f"{wins.round(3).to_markdown()}\n\n"
        "LFC R² on the top-100 DEGs per cell type and held-out donor (mean over seeds):\n\n"
        f"{_per_donor(frame).to_markdown()}\n\n"
        "The model trains on every cell but the held-out donor's stimulated cells, with the "
        "donor as its batch covariate, and predicts them from the donor's control cells. "
        "Per-type mean shift: the donor's control cells plus the type's mean response in the "
        "other donors (log1p CP10k). Per-type quantile shift: each of the donor's control "
        "cells moved, gene by gene, by the type's quantile response in the training cells "
        "(all cells but the donor's stimulated ones, as CGMVAE's), the move of CGMVAE's "
        "default route without the model. Noise ceiling: half of the donor's real "
        f"stimulated cells of the type predicting the other half ({NOISE_CEILING_SPLITS} splits). "
        f"{DONOR_SPECIFIC}: PCC-delta on the top-100 DEGs after the type's mean response in "
        "the other donors is subtracted from the predicted and the real response "
        "(evaluate_perturbation's pooled_response). Scores as in the perturbation sections; "
        "e_distance is lower-better.",
        lead=lead,
    )


if __name__ == "__main__":
    main()
