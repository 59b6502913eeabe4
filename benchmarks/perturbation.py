"""Perturbation prediction on Kang PBMCs with the scGen protocol (DESIGN.md §4).

For each held-out cell type: train on every cell except that type's stimulated cells, predict
them from the type's control cells, and score with ``scgmvae.tl.evaluate_perturbation``.
Methods: CGMVAE (``predict_perturbation``, routes w and z; NB on counts, and the thesis'
Gaussian likelihood on log1p CP10k), scGen-style latent arithmetic on
scVI, and the control cells as the prediction.

    python benchmarks/perturbation.py            # all cell types, 3 seeds -> docs/benchmarks.md
    python benchmarks/perturbation.py --full     # the full public Kang data (datasets.kang())
    python benchmarks/perturbation.py --smoke    # one cell type, 1 seed, 2 epochs (CI)
"""

from __future__ import annotations

import argparse
import shlex
import time

import pandas as pd
import scvi
from _common import kang, mean_sd, scvi_latent_arithmetic, setup_threads, write_section

import scgmvae

CONDITION, CTRL, STIM, LABEL = "condition", "control", "stimulated", "cell_type"
# draws per predicted cell, averaged: each cell's expected log-expression without one draw's noise
N_SAMPLES = 10


def _cgmvae_rows(
    train, control, stimulated, degs, seed: int, max_epochs: int, name: str, **model_kwargs
) -> tuple[dict, float]:
    """Scores of both routes of a CGMVAE trained on ``train``, and its training time."""
    scvi.settings.seed = seed
    scgmvae.model.CGMVAE.setup_anndata(train, condition_key=CONDITION, labels_key=LABEL)
    model = scgmvae.model.CGMVAE(train, **model_kwargs)
    start = time.perf_counter()
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    seconds = time.perf_counter() - start
    rows = {}
    for route in ("w", "z"):
        predicted = model.predict_perturbation(
            control, target_condition=STIM, route=route, n_samples=N_SAMPLES
        )
        scores = scgmvae.tl.evaluate_perturbation(predicted, stimulated, control, degs=degs)
        rows[f"{name} route {route}"] = scores.loc["prediction"]
    return rows, seconds


def run_one(adata, cell_type: str, seed: int, max_epochs: int, model_kwargs: dict) -> dict:
    held_out = (adata.obs[LABEL] == cell_type) & (adata.obs[CONDITION] == STIM)
    train = adata[~held_out].copy()
    control = adata[(adata.obs[LABEL] == cell_type) & (adata.obs[CONDITION] == CTRL)].copy()
    stimulated = adata[held_out].copy()
    degs = scgmvae.tl.top_degs(stimulated, control, n_genes=100)

    data = (control, stimulated, degs, seed, max_epochs)
    rows, seconds = _cgmvae_rows(train, *data, "CGMVAE", **model_kwargs)
    # the thesis' own setting: Gaussian likelihood on log1p CP10k data (the scores normalise
    # the real counts themselves)
    log_normalize = scgmvae.tl.log_normalize
    gaussian, _ = _cgmvae_rows(
        log_normalize(train),
        log_normalize(control),
        *data[1:],
        "CGMVAE Gaussian on log1p,",
        gene_likelihood="normal",
        **model_kwargs,
    )
    rows.update(gaussian)

    baseline = scvi_latent_arithmetic(train, control, CONDITION, CTRL, STIM, max_epochs, seed)
    scores = scgmvae.tl.evaluate_perturbation(baseline, stimulated, control, degs=degs)
    rows["scVI latent arithmetic"] = scores.loc["prediction"]
    rows["control as prediction"] = scores.loc["control"]
    result = {"cell_type": cell_type, "seed": seed, "train_seconds": seconds}
    for method, method_scores in rows.items():
        for metric, value in method_scores.items():
            result[(method, metric)] = value
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny run that checks the code")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cell-types", nargs="*", default=None)
    parser.add_argument(
        "--full",
        action="store_true",
        help="the full Kang data of scgmvae.datasets.kang() instead of the 832-cell file",
    )
    args = parser.parse_args()
    setup_threads()

    adata = kang(full=args.full)
    cell_types = args.cell_types or sorted(adata.obs[LABEL].unique())
    seeds, epochs = range(args.seeds), args.max_epochs
    if args.smoke:
        cell_types, seeds, epochs = cell_types[:1], range(1), 2
    results = []
    for cell_type in cell_types:
        for seed in seeds:
            result = run_one(adata, cell_type, seed, epochs, {})
            results.append(result)
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()})
    frame = pd.DataFrame(results)
    if args.smoke:
        print(frame.to_string())
        return
    metrics = [c for c in frame.columns if isinstance(c, tuple)]
    table = frame.groupby("cell_type")[metrics].agg(mean_sd)
    table.columns = [f"{method}: {metric}" for method, metric in table.columns]
    mean_row = frame[metrics].mean()
    table.loc["mean"] = [f"{v:.3f}" for v in mean_row]
    table = table.T
    data = f"Kang full data, {adata.n_obs:,} cells" if args.full else "Kang 832 cells"
    cell_type_args = f" --cell-types {shlex.join(args.cell_types)}" if args.cell_types else ""
    write_section(
        "perturbation_full" if args.full else "perturbation",
        f"Perturbation prediction ({data}, scGen protocol)",
        f"python benchmarks/perturbation.py --max-epochs {epochs} --seeds {len(seeds)}"
        + (" --full" if args.full else "")
        + cell_type_args,
        table,
        "R²: squared Pearson r of per-gene means (log1p CP10k) against the held-out real "
        "stimulated cells, on all 2,000 HVGs and on the top-100 DEGs (Wilcoxon, real stimulated "
        "vs control); r2_lfc_top_degs: R² of predicted vs real log fold-changes on those DEGs "
        "(a copy of the control scores 0). CGMVAE predictions average 10 draws per cell "
        "(``n_samples=10``). Mean ± sd over seeds, then the value of each seed.",
    )


if __name__ == "__main__":
    main()
