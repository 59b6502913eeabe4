"""Perturbation prediction on Kang PBMCs with the scGen protocol, against the real peers.

For each held-out cell type: train on every cell except that type's stimulated cells, predict
them from the type's control cells, and score with ``scgmvae.tl.evaluate_perturbation`` (R² of
means on all genes and the top-100 DEGs, R² of log fold-changes, R² of gene-wise variances,
E-distance and MMD in a PCA space of the real cells). Methods, on the same splits and seeds:
CGMVAE with ``predict_perturbation``'s default route (expression) and its decoding routes z and
w; pertpy's scGen and CPA, each in
its own Python (``benchmarks/peers/README.md``; a peer whose Python is not set up is skipped
with a message); scGen-style latent arithmetic on scVI; the control cells as the prediction.

    python benchmarks/perturbation.py              # 2,000 HVGs, 3 seeds -> docs/benchmarks.md
    python benchmarks/perturbation.py --all-genes  # all genes, as a user who skips HVGs
    python benchmarks/perturbation.py --full       # the full public Kang data (datasets.kang())
    python benchmarks/perturbation.py --smoke      # one cell type, 1 seed, 2 epochs (CI)

Every method's predictions are kept in ``benchmarks/.cache`` (see ``_cache.py``; not in smoke
runs), so a rerun retrains only what changed, and runs over disjoint ``--cell-types`` can go in
parallel before one run over all types writes the table.
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from pathlib import Path

import _cache
import pandas as pd
import scvi
from _common import kang, mean_sd, scvi_latent_arithmetic, setup_threads, write_section
from _peers import PEERS, run_peer, skip_message

import scgmvae

CONDITION, CTRL, STIM, LABEL = "condition", "control", "stimulated", "cell_type"
METRICS = ("r2_top_degs", "r2_lfc_top_degs", "r2_all", "r2_var_all", "e_distance", "mmd")
CGMVAE_ROWS = {"CGMVAE": {}, "CGMVAE route z": {"route": "z"}, "CGMVAE route w": {"route": "w"}}
"""CGMVAE rows: ``predict_perturbation``'s defaults, and the two routes that decode."""
SCGMVAE_SOURCE = _cache.source_digest(Path(scgmvae.__file__).parent)
"""The code this run imported (hashed at import), part of the key of CGMVAE's predictions."""


def _cgmvae_predictions(
    train, control, seed: int, max_epochs: int, key: str, variants: dict
) -> dict:
    """Each variant's prediction (``predict_perturbation`` keyword arguments by row name) of
    one CGMVAE trained on ``train`` (or stored)."""
    model = None

    def predict(kwargs: dict):
        nonlocal model
        if model is None:
            scvi.settings.seed = seed
            scgmvae.model.CGMVAE.setup_anndata(train, condition_key=CONDITION, labels_key=LABEL)
            model = scgmvae.model.CGMVAE(train)
            start = time.perf_counter()
            model.train(max_epochs=max_epochs, enable_progress_bar=False)
            model.train_seconds = time.perf_counter() - start
        predicted = model.predict_perturbation(control, target_condition=STIM, **kwargs)
        predicted.uns["train_seconds"] = model.train_seconds
        return predicted

    return {
        name: _cache.cached(
            _cache.digest(name, key, seed, max_epochs, kwargs, SCGMVAE_SOURCE),
            lambda kwargs=kwargs: predict(kwargs),
        )
        for name, kwargs in variants.items()
    }


def _peer_predictions(train, control, seed: int, smoke: bool, key: str) -> dict:
    predictions = {}
    for name, peer in PEERS.items():

        def run(name=name):
            predicted = run_peer(name, train, control, seed=seed, smoke=smoke)
            if predicted is not None:
                predicted.uns["train_seconds"] = predicted.uns["peer"]["train_seconds"]
            return predicted

        predicted = _cache.cached(_cache.digest(name, key, seed, smoke, peer.script), run)
        if predicted is None:
            print(skip_message(name), flush=True)
            continue
        predictions[peer.label] = predicted
    return predictions


def _scvi_prediction(train, control, seed: int, max_epochs: int, key: str):
    def run():
        start = time.perf_counter()
        predicted = scvi_latent_arithmetic(train, control, CONDITION, CTRL, STIM, max_epochs, seed)
        predicted.uns["train_seconds"] = time.perf_counter() - start
        return predicted

    return _cache.cached(_cache.digest("scVI", key, seed, max_epochs, scvi.__version__), run)


def bandwidth_rows(bandwidths: list[float]) -> dict:
    """CGMVAE rows of the default route at each ``response_bandwidth``."""
    return {f"CGMVAE, bandwidth {b:g}": {"response_bandwidth": b} for b in bandwidths}


def run_one(
    adata, cell_type: str, seed: int, max_epochs: int, smoke: bool, bandwidths=None
) -> list[dict]:
    """Every method's scores for one held-out type and seed, one dict per method; with
    ``bandwidths``, CGMVAE's default route at those bandwidths only."""
    held_out = (adata.obs[LABEL] == cell_type) & (adata.obs[CONDITION] == STIM)
    train = adata[~held_out].copy()
    control = adata[(adata.obs[LABEL] == cell_type) & (adata.obs[CONDITION] == CTRL)].copy()
    stimulated = adata[held_out].copy()
    degs = scgmvae.tl.top_degs(stimulated, control, n_genes=100)

    key = _cache.data_digest(train, control)
    variants = {**CGMVAE_ROWS, **bandwidth_rows(bandwidths)} if bandwidths else CGMVAE_ROWS
    predictions = _cgmvae_predictions(train.copy(), control, seed, max_epochs, key, variants)
    if bandwidths:
        # the default rows come from the same model and are stored on the way, so the main
        # table needs no retraining; this section reports the bandwidths only
        predictions = {name: p for name, p in predictions.items() if name not in CGMVAE_ROWS}
    else:
        predictions.update(_peer_predictions(train, control, seed, smoke, key))
        predictions["scVI latent arithmetic"] = _scvi_prediction(
            train, control, seed, max_epochs, key
        )
    rows = {}
    for method, predicted in predictions.items():
        scores = scgmvae.tl.evaluate_perturbation(predicted, stimulated, control, degs=degs)
        rows[method] = {
            **scores.loc["prediction"],
            "train_seconds": predicted.uns["train_seconds"],
        }
    rows["control as prediction"] = {**scores.loc["control"], "train_seconds": 0.0}
    return [
        {"cell_type": cell_type, "seed": seed, "method": method, **values}
        for method, values in rows.items()
    ]


def _tables(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (type, method): mean ± sd and seeds; and per method: the mean over types."""
    methods = list(dict.fromkeys(frame["method"]))
    per_type = frame.groupby(["cell_type", "method"], sort=False)[list(METRICS)].agg(mean_sd)
    per_type = per_type.reindex(
        pd.MultiIndex.from_product([sorted(frame["cell_type"].unique()), methods])
    ).dropna(how="all")
    columns = [*METRICS, "train_seconds"]
    summary = frame.groupby("method", sort=False)[columns].mean().reindex(methods)
    return per_type, summary.round(3)


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
    parser.add_argument(
        "--all-genes", action="store_true", help="every gene instead of 2,000 HVGs"
    )
    parser.add_argument(
        "--bandwidths",
        nargs="*",
        type=float,
        help="only CGMVAE's default route, at these response_bandwidth values "
        "(its own section of docs/benchmarks.md)",
    )
    parser.add_argument(
        "--section",
        help="name of the docs/benchmarks.md section to write, for a run that should not "
        "replace the section its options name (such as a subset of the cell types)",
    )
    args = parser.parse_args()
    setup_threads()
    if args.smoke:
        os.environ[_cache.CACHE_ENV] = "0"  # smoke runs check the code and keep nothing

    adata = kang(n_top_genes=None if args.all_genes else 2000, full=args.full)
    cell_types = args.cell_types or sorted(adata.obs[LABEL].unique())
    seeds, epochs = range(args.seeds), args.max_epochs
    if args.smoke:
        cell_types, seeds, epochs = cell_types[:1], range(1), 2
    rows = []
    for cell_type in cell_types:
        for seed in seeds:
            for row in run_one(adata, cell_type, seed, epochs, args.smoke, args.bandwidths):
                rows.append(row)
                print(
                    {k: round(float(v), 3) if isinstance(v, float) else v for k, v in row.items()}
                )
    frame = pd.DataFrame(rows)
    per_type, summary = _tables(frame)
    if args.smoke:
        print(per_type.to_string(), summary.to_string(), sep="\n\n")
        return
    data = f"Kang full data, {adata.n_obs:,} cells" if args.full else "Kang 832 cells"
    genes = f"all {adata.n_vars:,} genes" if args.all_genes else "2,000 HVGs"
    options = (" --full" if args.full else "") + (" --all-genes" if args.all_genes else "")
    options += f" --cell-types {shlex.join(args.cell_types)}" if args.cell_types else ""
    section = "perturbation" + ("_full" if args.full else "") + ("_all_genes" * args.all_genes)
    title = f"Perturbation prediction ({data}, {genes}, scGen protocol)"
    if args.bandwidths:
        options += " --bandwidths " + " ".join(f"{b:g}" for b in args.bandwidths)
        section += "_bandwidth"
        title = f"Response bandwidth of predict_perturbation ({data}, {genes})"
    if args.section:
        options += f" --section {args.section}"
        section = args.section
        title = title[:-1] + f", held-out {', '.join(cell_types)})"
    write_section(
        section,
        title,
        f"python benchmarks/perturbation.py --max-epochs {epochs} --seeds {len(seeds)}{options}",
        per_type,
        "Mean over the held-out types (and seeds), with training seconds:\n\n"
        f"{summary.to_markdown()}\n\n"
        f"R²: squared Pearson r of per-gene means (log1p CP10k) against the held-out real "
        f"stimulated cells, on {genes} (r2_all) and on the top-100 DEGs (Wilcoxon, real "
        "stimulated vs control); r2_lfc_top_degs: R² of predicted vs real log fold-changes on "
        "those DEGs (a copy of the control scores 0); r2_var_all: R² of per-gene variances; "
        "e_distance and mmd (linear kernel, pertpy's definitions): distances between the "
        "predicted and the real stimulated cells in a 50-component PCA of the real stimulated "
        "and control cells of the type (lower is better). CGMVAE: predict_perturbation's "
        "defaults (route expression: each control cell plus its component's measured expression "
        "response); 'route z' moves the cell's z and decodes one draw, 'route w' decodes the "
        "component's mean from w (the thesis' route); 'bandwidth b': the default route with "
        "response_bandwidth=b (the kernel over components through which a held-out type "
        "borrows its response). scGen: "
        "pertpy 1.4's Scgen, 200 epochs of batches of 32, on log1p CP10k; CPA: cpa-tools 0.8.8 "
        "with its Kang tutorial's settings (early stopping); both through benchmarks/_peers.py. "
        f"scVI latent arithmetic and CGMVAE: {epochs} epochs. Mean ± sd over seeds, then each "
        "seed.",
    )


if __name__ == "__main__":
    main()
