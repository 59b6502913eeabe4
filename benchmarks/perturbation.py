"""Perturbation prediction on Kang PBMCs with the scGen protocol, against the real peers.

For each held-out cell type: train on every cell except that type's stimulated cells, predict
them from the type's control cells, and score with ``scgmvae.tl.evaluate_perturbation`` (R² of
means on all genes and the top-100 DEGs, R² of log fold-changes, R² of gene-wise variances,
E-distance and MMD in a PCA space of the real cells, and every calibrated score it returns:
PCC-delta, sign accuracy, DEG overlap, scaled E-distance, the type-specific part of the
response). Methods, on the same splits and seeds: CGMVAE with ``predict_perturbation``'s
default route (expression) and its decoding routes z and w; the peers of ``_peers.PEERS``
(pertpy's scGen, CPA, trVAE, scPRAM), each in its own Python (``benchmarks/peers/README.md``; a
peer whose Python is not set up is skipped with a message); scGen-style latent arithmetic on
scVI; the model-free baselines of ``_baselines.py`` (the pooled shift of the other types,
scPerturBench's trainMean; a similarity-weighted shift; the nearest type's shift) and the
control cells as the prediction; and two reference rows that look at the answer: the noise
ceiling (half of the real stimulated cells predicting the other half,
``scgmvae.tl.noise_ceiling``) and the borrowing bound (the best non-negative combination of the
other types' responses, ``_baselines.borrowing_bound``). The response scores are also taken
with the control cells split in two (columns ``*_ctrl_split``: the prediction from one half,
the responses against the other), so that the input's own noise cannot inflate them.

    python benchmarks/perturbation.py              # 832 cells, 2,000 HVGs, 3 seeds
    python benchmarks/perturbation.py --all-genes  # all genes, as a user who skips HVGs
    python benchmarks/perturbation.py --full       # the full-size 6-donor file (12,103 cells)
    python benchmarks/perturbation.py --dispersion gene-cell  # CGMVAE's rows with that dispersion
    python benchmarks/perturbation.py --smoke      # one cell type, 1 seed, 2 epochs (CI)

``--full`` reads ``kang_ifnb_6donors.h5ad`` from ``$SCGMVAE_DATA_DIR`` and holds out, in turn,
every type with at least ``MIN_STIMULATED_FULL`` stimulated cells; its section of
docs/benchmarks.md opens with a figure (``docs/_static/<section>.png``).

Every method's predictions are kept in ``benchmarks/.cache`` (see ``_cache.py``; not in smoke
runs), so a rerun retrains only what changed, and runs over disjoint ``--cell-types`` can go in
parallel before one run over all types writes the table.
"""

from __future__ import annotations

import argparse
import os
import shlex
import tempfile
import textwrap
import time
from pathlib import Path

import _baselines
import _cache
import _pseudobulk
import numpy as np
import pandas as pd
import scvi
from _common import (
    RESULTS,
    TITLE_WIDTH,
    dispersion_suffix,
    kang,
    mean_sd,
    scvi_latent_arithmetic,
    setup_threads,
    write_section,
)
from _peers import PEERS, run_peer, skip_message

import scgmvae
from scgmvae.module._constants import DISPERSIONS

CONDITION, CTRL, STIM, LABEL = "condition", "control", "stimulated", "cell_type"
DONOR = "donor"
"""Where the full-size data name the donor, the sample of the pseudobulk DE."""
KEYS = {"condition_key": CONDITION, "ctrl": CTRL, "stim": STIM, "label_key": LABEL}
BORROWED_ROW = "CGMVAE, borrowed response only"
CGMVAE_ROWS = {
    "CGMVAE": {},
    BORROWED_ROW: {"decoded_response_weight": 0.0},
    "CGMVAE route z": {"route": "z"},
    "CGMVAE route w": {"route": "w"},
}
"""CGMVAE rows: ``predict_perturbation``'s defaults; the default route without the decoded
response (the earlier default); and the two routes that decode."""
CONTROL_ROW, CEILING_ROW = "control as prediction", "noise ceiling"
BOUND_ROW = "borrowing bound"
MIN_STIMULATED_FULL = 150
"""With ``--full``, the held-out types by default: every type with at least this many
stimulated cells (enough for the noise ceiling's halves and stable DEGs)."""
FULL_MAX_EPOCHS = 100
"""Epochs of CGMVAE and scVI with ``--full`` unless ``--max-epochs`` says otherwise (chosen from
the loss curve of one CGMVAE on the full data; see the section's notes)."""
FULL_PEER_EPOCHS = {"scgen": FULL_MAX_EPOCHS}
"""With ``--full``, the epochs of the peers that train for a fixed number of epochs rather than
until their validation loss stops improving: scGen as long as CGMVAE and scVI, as in the issue's
reference scGen run on this file."""
N_HVGS = 2000
DEG_TEST = "wilcoxon"
"""The scGen protocol's genes and DEG test (the default tables)."""
SCPERTURBENCH_HVGS = 5000
SCPERTURBENCH_DEG_TEST = "t-test"
"""scPerturBench's Kang protocol (Wei et al., Nature Methods 2025): 5,000 HVGs and t-test DEGs
of the held-out type, so the PCC-delta rows sit next to its published ones."""
SCPERTURBENCH_PUBLISHED = {
    "trVAE": 0.967,
    "CellOT": 0.941,
    "scGen": 0.925,
    "scPRAM": 0.924,
    "trainMean": 0.773,
}
"""scPerturBench's published mean PCC-delta on the top-100 DEGs for Kang (8 held-out types,
its own cells, splits and training settings), the methods' names as there; its trainMean is the
pooled shift here."""
HEADLINE = (
    "r2_top_degs",
    "r2_lfc_top_degs",
    "pcc_delta_top_degs",
    "pcc_delta_top_degs_ctrl_split",
    "pcc_type_specific_top_degs",
    "e_distance",
)
"""The columns of the section's first table (all columns follow in the detailed one)."""
CTRL_SPLIT = ("r2_lfc_top_degs", "pcc_delta_all", "pcc_delta_top_degs", "sign_accuracy_top_degs")
"""Scores also taken with the control cells split in two, as ``<score>_ctrl_split``."""
FIGURE_METRICS = {
    "r2_lfc_top_degs": "LFC R² on the top-100 DEGs",
    "pcc_type_specific_top_degs": "type-specific PCC-delta on the top-100 DEGs\n"
    "(after removing the other types' pooled response)",
}
"""The panels of the figure, left to right."""
FIGURE_SKIP = ("CGMVAE route z", "CGMVAE route w", "nearest-type shift", CONTROL_ROW)
"""Rows left out of the figure (variants, and the control, which scores 0 on LFC R²); the
borrowed response alone stays, as a hollow CGMVAE marker, so the figure shows before/after."""
METHOD_COLOURS = {
    "trVAE": "#1b9e77",
    "scPRAM": "#d95f02",
    "scGen": "#e7298a",
    "CPA": "#a6761d",
    "scVI latent arithmetic": "#e6ab02",
}
"""Each peer's colour in every figure, whichever peers a run has; other trained methods take
those of :data:`OTHER_COLOURS` in turn."""
OTHER_COLOURS = ("#66a61e", "#7570b3", "#a6cee3")
FIGURE_SKIP_PANEL = {"pcc_type_specific_top_degs": ("pooled shift",)}
"""Rows left out of one panel: the pooled shift has no type-specific part (its score there is
the correlation of rounding errors)."""
_PACKAGE = Path(scgmvae.__file__).parent
SCGMVAE_SOURCE = _cache.digest(
    *(
        f"{path.relative_to(_PACKAGE)}:{path.read_bytes()!r}"
        for path in sorted(_PACKAGE.rglob("*.py"))
        if path.relative_to(_PACKAGE).parts[0] not in ("tl", "pl")
    )
)
"""The code that trains and predicts, hashed at import (every module of scgmvae but ``tl`` and
``pl``: scores and plots are recomputed from the stored predictions anyway), part of the key
of CGMVAE's predictions."""


def cgmvae_predictions(
    train,
    control,
    seed: int,
    max_epochs: int,
    key: str,
    variants: dict,
    setup: dict | None = None,
    model_kwargs: dict | None = None,
) -> dict:
    """Each variant's prediction (``predict_perturbation`` keyword arguments by row name) of
    one CGMVAE trained on ``train`` (or stored); ``setup``: further ``setup_anndata``
    arguments, such as a batch key; ``model_kwargs``: arguments of the model, such as its
    dispersion."""
    setup, model_kwargs = setup or {}, model_kwargs or {}
    model = None

    def predict(kwargs: dict):
        nonlocal model
        if model is None:
            scvi.settings.seed = seed
            scgmvae.model.CGMVAE.setup_anndata(
                train, condition_key=CONDITION, labels_key=LABEL, **setup
            )
            model = scgmvae.model.CGMVAE(train, **model_kwargs)
            start = time.perf_counter()
            model.train(max_epochs=max_epochs, enable_progress_bar=False)
            model.train_seconds = time.perf_counter() - start
        predicted = model.predict_perturbation(control, target_condition=STIM, **kwargs)
        predicted.uns["train_seconds"] = model.train_seconds
        return predicted

    # model arguments enter the key only when set, so runs with the defaults stay stored
    extra = (model_kwargs,) if model_kwargs else ()
    return {
        name: _cache.cached(
            _cache.digest(name, key, seed, max_epochs, kwargs, setup, SCGMVAE_SOURCE, *extra),
            lambda kwargs=kwargs: predict(kwargs),
        )
        for name, kwargs in variants.items()
    }


def _peer_predictions(
    train, control, seed: int, smoke: bool, key: str, peer_epochs: dict, stored_only: bool
) -> dict:
    """Each peer's prediction; with ``stored_only``, only those already in the cache."""
    predictions = {}
    for name, peer in PEERS.items():
        epochs = peer_epochs.get(name)

        def run(name=name, epochs=epochs):
            if stored_only:
                return None
            predicted = run_peer(name, train, control, seed=seed, smoke=smoke, max_epochs=epochs)
            if predicted is not None:
                predicted.uns["train_seconds"] = predicted.uns["peer"]["train_seconds"]
            return predicted

        # the epochs enter the key only when set, so runs at the scripts' defaults stay stored
        extra = () if epochs is None else (epochs,)
        predicted = _cache.cached(_cache.digest(name, key, seed, smoke, peer.script, *extra), run)
        if predicted is None:
            message = f"{peer.label}: no stored prediction" if stored_only else skip_message(name)
            print(message, flush=True)
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


def default_cell_types(adata, full: bool) -> list[str]:
    """The held-out types: every type (sorted), or with ``full`` those with at least
    :data:`MIN_STIMULATED_FULL` stimulated cells, the largest first (so that a run stopped
    early has the best-measured types)."""
    types = adata.obs[LABEL].astype(str)
    if not full:
        return sorted(types.unique())
    counts = types[(adata.obs[CONDITION] == STIM).to_numpy()].value_counts()
    counts = counts[counts >= MIN_STIMULATED_FULL]
    return sorted(counts.index, key=lambda t: (-counts[t], t))


def _control_halves(control, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two random halves of the control cells: the prediction's input and the reference."""
    order = np.random.default_rng(seed).permutation(control.n_obs)
    half = control.n_obs // 2
    return np.sort(order[:half]), np.sort(order[half : 2 * half])


def _scores(predicted, stimulated, control, degs, pooled, halves) -> pd.DataFrame:
    """Every score of ``evaluate_perturbation`` (rows prediction and control), and the
    :data:`CTRL_SPLIT` scores with the control cells split in two.

    The split takes the prediction's cells of the input half: every method here predicts each
    control cell on its own (a shift, a decoding of that cell), so this is the prediction from
    that half.
    """
    scores = scgmvae.tl.evaluate_perturbation(
        predicted, stimulated, control, degs=degs, pooled_response=pooled
    )
    first, second = halves
    split = scgmvae.tl.evaluate_perturbation(
        predicted[first],
        stimulated,
        control[first],
        control_reference=control[second],
        distances=False,
    )
    return scores.join(split[list(CTRL_SPLIT)].add_suffix("_ctrl_split"))


def _ceiling(stimulated, control, degs, pooled, halves, seed: int) -> pd.Series:
    """The noise ceiling's scores, with the same columns as :func:`_scores`."""
    scores = scgmvae.tl.noise_ceiling(
        stimulated, control, seed=seed, degs=degs, pooled_response=pooled
    )
    first, second = halves
    split = scgmvae.tl.noise_ceiling(
        stimulated,
        control[first],
        seed=seed,
        control_reference=control[second],
        distances=False,
    )
    return scores.join(split[list(CTRL_SPLIT)].add_suffix("_ctrl_split")).loc["prediction"]


def run_one(
    adata,
    cell_type: str,
    seed: int,
    max_epochs: int,
    smoke: bool,
    bandwidths=None,
    deg_test: str = DEG_TEST,
    peer_epochs: dict | None = None,
    stored_peers_only: bool = False,
    dispersion: str = "gene",
    scvi_row: bool = True,
) -> tuple[list[dict], dict]:
    """Every method's scores for one held-out type and seed, one dict per method; with
    ``bandwidths``, CGMVAE's default route at those bandwidths only. Also what the
    similarity-weighted shift used: the nearest type and the weights. ``deg_test`` ranks the
    real stimulated against the control cells of the type for its top-100 DEGs; ``peer_epochs``
    sets the epochs of peers by name (the peer scripts' defaults otherwise); with
    ``stored_peers_only`` a peer gives a row only where its prediction is already stored;
    ``dispersion`` other than the default trains CGMVAE with it and leaves out the peers and
    scVI, which it does not change; without ``scvi_row`` scVI latent arithmetic is left out."""
    held_out = (adata.obs[LABEL] == cell_type) & (adata.obs[CONDITION] == STIM)
    train = adata[~held_out].copy()
    control = adata[(adata.obs[LABEL] == cell_type) & (adata.obs[CONDITION] == CTRL)].copy()
    stimulated = adata[held_out].copy()
    degs = scgmvae.tl.top_degs(stimulated, control, n_genes=100, method=deg_test)

    key = _cache.data_digest(train, control)
    variants = {**CGMVAE_ROWS, **bandwidth_rows(bandwidths)} if bandwidths else CGMVAE_ROWS
    model_kwargs = {"dispersion": dispersion} if dispersion != "gene" else None
    predictions = cgmvae_predictions(
        train.copy(), control, seed, max_epochs, key, variants, model_kwargs=model_kwargs
    )
    baselines, responses = _baselines.baseline_predictions(train, control, **KEYS)
    if bandwidths:
        # the default rows come from the same model and are stored on the way, so the main
        # table needs no retraining; this section reports the bandwidths only
        predictions = {name: p for name, p in predictions.items() if name not in CGMVAE_ROWS}
    else:
        if model_kwargs is None:  # the peers and scVI do not depend on CGMVAE's arguments
            predictions.update(
                _peer_predictions(
                    train, control, seed, smoke, key, peer_epochs or {}, stored_peers_only
                )
            )
            if scvi_row:
                predictions["scVI latent arithmetic"] = _scvi_prediction(
                    train, control, seed, max_epochs, key
                )
        predictions.update(baselines)
        predictions[BOUND_ROW] = _baselines.borrowing_bound(responses, stimulated)
    # the pooled response of the other types: the reference of the type-specific score
    pooled = responses.responses.mean(0)
    halves = _control_halves(control, seed)
    rows = {}
    for method, predicted in predictions.items():
        scores = _scores(predicted, stimulated, control, degs, pooled, halves)
        rows[method] = {
            **scores.loc["prediction"],
            "train_seconds": predicted.uns["train_seconds"],
        }
    if DONOR in adata.obs and adata.obs[DONOR].nunique() > 1 and not bandwidths:
        # predictions with counts (the decoding routes): do their pseudobulk DEGs find the real?
        real = set(_pseudobulk.pseudobulk_top_degs(stimulated, control, DONOR))
        for method, predicted in predictions.items():
            if _pseudobulk.has_counts(predicted):
                found = _pseudobulk.pseudobulk_top_degs(
                    predicted, control, DONOR, stimulated_layer=_pseudobulk.COUNTS_LAYER
                )
                rows[method]["overlap_pseudobulk_degs"] = len(real.intersection(found)) / len(real)
    rows[CONTROL_ROW] = {**scores.loc["control"], "train_seconds": 0.0}
    if not bandwidths:
        rows[CEILING_ROW] = {
            **_ceiling(stimulated, control, degs, pooled, halves, seed),
            "train_seconds": 0.0,
        }
        if DONOR in adata.obs and adata.obs[DONOR].nunique() > 1:
            rows[CEILING_ROW]["overlap_pseudobulk_degs"] = _pseudobulk.split_half_overlap(
                stimulated, control, DONOR, seed
            )
    similarity = {
        "nearest": responses.nearest,
        "r": responses.similarity[responses.nearest],
        "weights": responses.similarity_weights().sort_values(ascending=False),
    }
    return [
        {"cell_type": cell_type, "seed": seed, "method": method, **values}
        for method, values in rows.items()
    ], similarity


def _metrics(frame: pd.DataFrame) -> list[str]:
    """Every score column of the rows, in their order (new scores appear without edits)."""
    return [c for c in frame.columns if c not in ("cell_type", "seed", "method", "train_seconds")]


def complete_types(frame: pd.DataFrame) -> list[str]:
    """The held-out types that every method of ``frame`` has rows for (sorted): the means
    over types use these alone, so that a peer missing on a type does not move its mean."""
    methods = frame["method"].nunique()
    counts = frame.groupby("cell_type")["method"].nunique()
    return sorted(counts.index[counts == methods])


def _tables(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The headline per method (mean over types and seeds of :data:`HEADLINE`, training
    seconds); every score per method (mean over types and seeds); and every score per (type,
    method) as mean ± sd over seeds, then each seed. The means over types use
    :func:`complete_types` alone."""
    methods = list(dict.fromkeys(frame["method"]))
    metrics = _metrics(frame)
    per_type = frame.groupby(["cell_type", "method"], sort=False)[metrics].agg(mean_sd)
    per_type = per_type.reindex(
        pd.MultiIndex.from_product([sorted(frame["cell_type"].unique()), methods])
    ).dropna(how="all")
    complete = frame[frame["cell_type"].isin(complete_types(frame))]
    summary = complete.groupby("method", sort=False)[[*metrics, "train_seconds"]].mean()
    summary = summary.reindex(methods).round(3)
    headline = summary[[c for c in (*HEADLINE, "train_seconds") if c in summary]]
    return headline, summary, per_type


def _wide(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` per held-out type (rows) and method (columns), mean over seeds."""
    methods = list(dict.fromkeys(frame["method"]))
    wide = frame.pivot_table(index="cell_type", columns="method", values=metric, aggfunc="mean")
    wide = wide[[m for m in methods if m in wide]]
    wide.loc["mean"] = wide.loc[complete_types(frame)].mean()
    return wide.round(3)


def figure(
    frame: pd.DataFrame,
    path: Path,
    title: str,
    panels: dict[str, str] = FIGURE_METRICS,
    skip_panel: dict[str, tuple[str, ...]] = FIGURE_SKIP_PANEL,
    model_free: tuple[str, ...] = tuple(_baselines.BASELINES),
) -> None:
    """Per held-out type, each method's score (mean over seeds, a large dot; each seed, a
    small one) with the noise ceiling as a black bar and the borrowing bound as a dashed grey
    one; one panel per entry of ``panels`` (score: panel title), without the methods that
    ``skip_panel`` names for that score. The ``model_free`` rows are drawn as grey squares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    bars = {  # reference rows, drawn as bars
        CEILING_ROW: {"color": "black", "lw": 2.5},
        BOUND_ROW: {"color": "#777777", "lw": 2.0, "ls": (0, (2, 1))},
    }
    methods = [m for m in dict.fromkeys(frame["method"]) if m not in (*FIGURE_SKIP, *bars)]
    types = sorted(frame["cell_type"].unique())
    rows = [*types, "mean"]
    palette = iter(OTHER_COLOURS)
    grey = iter(["#555555", "#999999", "#bbbbbb"])
    style = {}
    for method in methods:
        if method == "CGMVAE":
            style[method] = {"color": "#3b5bdb", "marker": "o", "s": 90, "zorder": 5}
        elif method == BORROWED_ROW:
            style[method] = {
                "color": "white",
                "edgecolor": "#3b5bdb",
                "marker": "o",
                "s": 70,
                "zorder": 5,
            }
        elif method in model_free:
            style[method] = {"color": next(grey), "marker": "s", "s": 45, "zorder": 3}
        else:
            colour = METHOD_COLOURS.get(method) or next(palette)
            style[method] = {"color": colour, "marker": "D", "s": 45, "zorder": 4}
    metrics = [m for m in panels if m in frame]
    fig, axes = plt.subplots(
        1,
        len(metrics),
        # narrow enough to be read at the width of a docs page; the legend goes below
        figsize=(3.9 * len(metrics) + 1.3, 0.5 * len(rows) + 2.2),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    offsets = dict(zip(methods, np.linspace(-0.28, 0.28, len(methods)), strict=True))
    for ax, metric in zip(axes[0], metrics, strict=True):
        per_seed = frame.pivot_table(index=["cell_type", "seed"], columns="method", values=metric)
        means = per_seed.groupby(level="cell_type").mean()
        means.loc["mean"] = means.loc[complete_types(frame)].mean()
        for y, row in enumerate(rows):
            if y % 2 == 0:
                ax.axhspan(y - 0.5, y + 0.5, color="#f3f3f3", zorder=0)
            for bar, kw in bars.items():
                if bar in means and bar not in skip_panel.get(metric, ()):
                    value = means.loc[row, bar]
                    ax.plot([value, value], [y - 0.42, y + 0.42], zorder=6, **kw)
            for method in methods:
                if method not in means or method in skip_panel.get(metric, ()):
                    continue
                yy = y + offsets[method]
                kw = style[method]
                ax.scatter(
                    means.loc[row, method], yy, **{"edgecolor": "white", "linewidth": 1.2, **kw}
                )
                if row != "mean":
                    seeds = per_seed.loc[row, method].dropna()
                    if len(seeds) > 1:
                        ax.scatter(
                            seeds,
                            [yy] * len(seeds),
                            color=kw.get("edgecolor", kw["color"]),
                            s=70,
                            linewidths=1.5,
                            alpha=0.7,
                            zorder=kw["zorder"],
                            marker="|",
                        )
        ax.axhline(len(types) - 0.5, color="black", lw=0.8)
        ax.set_title(panels[metric], fontsize=11)
        ax.tick_params(labelsize=11)
        ax.grid(axis="x", color="#dddddd", lw=0.6)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        skip = skip_panel.get(metric, ())
        shown = means[[m for m in [*methods, *bars] if m in means and m not in skip]]
        low = np.nanmin(shown.to_numpy())
        ax.set_xlim(max(-1.0, min(low - 0.05, 0.5)), 1.01)
    n_complete = len(complete_types(frame))
    # the mean row says over how many types it is when some method missed a type
    mean_label = "mean" if n_complete == len(types) else f"mean of {n_complete}"
    axes[0, 0].set_yticks(range(len(rows)), [*types, mean_label])
    axes[0, 0].set_ylim(len(rows) - 0.5, -0.5)
    axes[0, 0].get_yticklabels()[-1].set_fontweight("bold")
    handles = [
        Line2D(
            [],
            [],
            ls="",
            marker=style[m]["marker"],
            markerfacecolor=style[m]["color"],
            markeredgecolor=style[m].get("edgecolor", style[m]["color"]),
            markersize=9 if m.startswith("CGMVAE") else 7,
            label=m,
        )
        for m in methods
    ]
    labels = {CEILING_ROW: "noise ceiling (split half)", BOUND_ROW: "borrowing bound"}
    handles += [Line2D([], [], label=labels[b], **kw) for b, kw in bars.items() if b in means]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False, fontsize=11)
    # wrapped to the panels' width, which a title of every option can exceed
    fig.suptitle(textwrap.fill(title, TITLE_WIDTH), fontsize=11.5, x=0.01, ha="left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def _similarity_notes(similarity: dict) -> str:
    """One line per held-out type: the nearest type and the largest weights."""
    lines = []
    for cell_type, used in sorted(similarity.items()):
        weights = ", ".join(f"{t} {w:.2f}" for t, w in used["weights"].head(3).items())
        lines.append(
            f"- {cell_type}: nearest {used['nearest']} (r = {used['r']:.3f}); weights {weights}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny run that checks the code")
    parser.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help=f"epochs of CGMVAE and scVI (default 200; {FULL_MAX_EPOCHS} with --full)",
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="the seeds run are --first-seed, --first-seed + 1, ... (another seed of a run "
        "without repeating the ones it has; writes its own section with --section)",
    )
    parser.add_argument("--cell-types", nargs="*", default=None)
    parser.add_argument(
        "--full",
        action="store_true",
        help="the full-size Kang data (kang_ifnb_6donors.h5ad in $SCGMVAE_DATA_DIR, 12,103 "
        f"cells) instead of the 832-cell file; held out by default: every type with at least "
        f"{MIN_STIMULATED_FULL} stimulated cells",
    )
    parser.add_argument(
        "--all-genes", action="store_true", help="every gene instead of 2,000 HVGs"
    )
    parser.add_argument(
        "--scperturbench",
        action="store_true",
        help=f"scPerturBench's Kang protocol: {SCPERTURBENCH_HVGS:,} HVGs and "
        f"{SCPERTURBENCH_DEG_TEST} DEGs of the held-out type (its headline is PCC-delta)",
    )
    parser.add_argument(
        "--bandwidths",
        nargs="*",
        type=float,
        help="only CGMVAE's default route, at these response_bandwidth values "
        "(its own section of docs/benchmarks.md)",
    )
    parser.add_argument(
        "--dispersion",
        default="gene",
        choices=DISPERSIONS,
        help="CGMVAE's dispersion; other than the default it writes its own section with "
        "CGMVAE's rows, the model-free rows and the references (the peers and scVI on the same "
        "splits are in the section of the default)",
    )
    parser.add_argument(
        "--stored-peers-only",
        action="store_true",
        help="the peers' rows from stored predictions alone (benchmarks/.cache), to gather "
        "runs made type by type into one table without training a peer again; a peer with "
        "no stored prediction for a type has no row there",
    )
    parser.add_argument(
        "--no-scvi",
        action="store_true",
        help="leave out scVI latent arithmetic (it has its rows in the scGen-protocol tables), "
        "which nearly halves a long run",
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

    n_top_genes = SCPERTURBENCH_HVGS if args.scperturbench else N_HVGS
    adata = kang(n_top_genes=None if args.all_genes else n_top_genes, full=args.full)
    deg_test = SCPERTURBENCH_DEG_TEST if args.scperturbench else DEG_TEST
    cell_types = args.cell_types or default_cell_types(adata, args.full)
    print(f"held-out types: {cell_types}", flush=True)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    epochs = args.max_epochs or (FULL_MAX_EPOCHS if args.full else 200)
    if args.smoke:
        cell_types, seeds, epochs = cell_types[:1], seeds[:1], 2
    rows, similarity = [], {}
    for cell_type in cell_types:
        for seed in seeds:
            scored, used = run_one(
                adata,
                cell_type,
                seed,
                epochs,
                args.smoke,
                args.bandwidths,
                deg_test,
                peer_epochs=FULL_PEER_EPOCHS if args.full else None,
                stored_peers_only=args.stored_peers_only,
                scvi_row=not args.no_scvi,
                dispersion=args.dispersion,
            )
            similarity[cell_type] = used
            for row in scored:
                rows.append(row)
                print(
                    {k: round(float(v), 3) if isinstance(v, float) else v for k, v in row.items()},
                    flush=True,
                )
        if not args.smoke:  # after each type, so that a long run shows what it has done
            _write(pd.DataFrame(rows), adata, args, cell_types, seeds, epochs, similarity)
    if args.smoke:
        frame = pd.DataFrame(rows)
        headline, summary, per_type = _tables(frame)
        print(per_type.to_string(), summary.to_string(), headline.to_string(), sep="\n\n")
        print(_similarity_notes(similarity))
        if not args.bandwidths:
            with tempfile.TemporaryDirectory() as folder:
                figure(frame, Path(folder) / "figure.png", "smoke")
                print("figure written", flush=True)


def _seed_label(seeds: range) -> str:
    """How many seeds ran, and which when they do not start at 0."""
    label = f"{len(seeds)} seed{'s' * (len(seeds) > 1)}"
    if seeds.start:
        label += f" ({', '.join(map(str, seeds))})"
    return label


def published_means(frame: pd.DataFrame) -> str:
    """The mean PCC-delta on the top-100 DEGs over the types every method ran on (CGMVAE, the
    published peers that ran, the model-free rows and the ceiling), beside scPerturBench's
    published means (:data:`SCPERTURBENCH_PUBLISHED`)."""
    mean, n_types = _wide(frame, "pcc_delta_top_degs").loc["mean"], len(complete_types(frame))
    # the peers that ran here come right after CGMVAE, in the order of the published means
    peers = [method for method in SCPERTURBENCH_PUBLISHED if method in mean]
    ours = ", ".join(
        f"{method} {mean[method]:.3f}"
        for method in ("CGMVAE", *peers, "pooled shift", "similarity-weighted shift", CEILING_ROW)
        if method in mean
    )
    published = ", ".join(
        f"{method} {value:.3f}" for method, value in SCPERTURBENCH_PUBLISHED.items()
    )
    return (
        f"Mean over the {n_types} type{'s' * (n_types != 1)} here: {ours}. scPerturBench's "
        "published means for Kang (8 held-out types on its own cells, splits and training "
        f"settings; its trainMean is the pooled shift here): {published}."
    )


def _published_note(frame: pd.DataFrame) -> str:
    """PCC-delta on the top-100 DEGs per held-out type, then :func:`published_means`."""
    return (
        "PCC-delta on the top-100 DEGs per held-out type (mean over seeds; scPerturBench's "
        f"headline score):\n\n{_wide(frame, 'pcc_delta_top_degs').to_markdown()}\n\n"
        f"{published_means(frame)}\n\n"
    )


def _write(frame, adata, args, cell_types, seeds, epochs, similarity) -> None:
    """The section of docs/benchmarks/perturbation.md for the rows so far (and its figure)."""
    headline, summary, per_type = _tables(frame)
    deg_test = SCPERTURBENCH_DEG_TEST if args.scperturbench else DEG_TEST
    done = list(dict.fromkeys(frame["cell_type"]))
    data = f"Kang 6 donors, {adata.n_obs:,} cells" if args.full else "Kang 832 cells"
    genes = f"all {adata.n_vars:,} genes" if args.all_genes else f"{adata.n_vars:,} HVGs"
    options = (" --full" if args.full else "") + (" --all-genes" if args.all_genes else "")
    options += " --scperturbench" if args.scperturbench else ""
    options += f" --cell-types {shlex.join(args.cell_types)}" if args.cell_types else ""
    section = "perturbation" + ("_kang6" if args.full else "") + ("_all_genes" * args.all_genes)
    title = f"Perturbation prediction ({data}, {genes}, scGen protocol)"
    if args.scperturbench:
        section += "_scperturbench"
        title = f"Perturbation prediction ({data}, {genes}, scPerturBench's protocol)"
    if args.bandwidths:
        options += " --bandwidths " + " ".join(f"{b:g}" for b in args.bandwidths)
        section += "_bandwidth"
        title = f"Response bandwidth of predict_perturbation ({data}, {genes})"
    options += " --stored-peers-only" if args.stored_peers_only else ""
    options += " --no-scvi" if args.no_scvi else ""
    options += f" --first-seed {args.first_seed}" if args.first_seed else ""
    dispersion_label = ""
    if args.dispersion != "gene":
        dispersion_label = f", CGMVAE with dispersion={args.dispersion!r}"
        options += f" --dispersion {args.dispersion}"
        section += dispersion_suffix(args.dispersion)
        title = title[:-1] + dispersion_label + ")"
    if args.section:
        options += f" --section {args.section}"
        section = args.section
    if args.cell_types:
        title = title[:-1] + f", held-out {', '.join(cell_types)})"
    if seeds.start:  # a run of further seeds says which in its title
        title = title[:-1] + f", seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))})"
    if len(done) < len(cell_types):
        title += f" [partial: {len(done)} of {len(cell_types)} held-out types so far]"
    lead = ""
    if not args.bandwidths:
        image = f"_static/{section}.png"
        figure(
            frame,
            RESULTS.parent / image,
            f"{data}, {genes}{dispersion_label}: held-out stimulated cells of each type, "
            f"{_seed_label(seeds)}, {epochs} epochs",
        )
        lead = (  # the image's path is relative to the page, in docs/benchmarks/
            f"![Per held-out type, each method's scores with the noise ceiling](../{image})\n\n"
            "Per held-out type: each method's score (large dot: mean over seeds; ticks: each "
            "seed; hollow blue circle: CGMVAE with its borrowed response alone, the default "
            "before the decoded response), the noise ceiling as a black bar (half of the real "
            "stimulated cells predicting the other half) and the borrowing bound as a dashed "
            "grey one (the best non-negative combination of the other types' responses, fitted "
            "to the real response: a method that mixes the seen types' responses gets no "
            "further on the mean response); the bottom row is the mean over the types every "
            "method ran on. Left: R² "
            "of predicted vs real log fold-changes on the top-100 DEGs; right: the Pearson r "
            "of the responses after the other types' pooled response is removed from both "
            "(the part a held-out type cannot copy; the pooled shift has none and is not "
            "shown there). Not shown: the control (0 on the left), CGMVAE's routes z and w "
            "and the nearest-type shift (in the tables).\n"
        )
    deg_note = (
        "R²: squared Pearson r of per-gene means (log1p CP10k) against the held-out real "
        f"stimulated cells, on {genes} (r2_all) and on the top-100 DEGs ({deg_test}, real "
        "stimulated vs control); r2_lfc_top_degs: R² of predicted vs real log fold-changes on "
        "those DEGs (a copy of the control scores 0); pcc_delta_*: the Pearson r (not squared) "
        "of the responses on all genes and the top DEGs (scPerturBench's PCC-delta); "
        "sign_accuracy_top_degs: share of the DEGs whose predicted response has the real sign; "
        "overlap_top_degs: share of the real top-100 DEGs among the prediction's own top 100; "
        "overlap_pseudobulk_degs (predictions with sampled counts, full-size data): the same "
        "share for a pseudobulk DE of the counts summed per donor (benchmarks/_pseudobulk.py: "
        "log2 CPM, a moderated paired t over the donors), predicted and real alike (noise "
        "ceiling: the real stimulated cells split in halves within each donor, one half's "
        "list against the other's); "
        "pcc_type_specific_top_degs: PCC-delta after the pooled response of the other types is "
        "subtracted from both responses; *_ctrl_split: the score with the control cells split "
        "in two at random (the prediction from one half, the responses measured against the "
        "other), so that the input's own noise cannot inflate it; r2_var_all: R² of per-gene "
        "variances; e_distance and mmd (linear kernel, pertpy's definitions): distances between "
        "the predicted and the real stimulated cells in a 50-component PCA of the real "
        "stimulated and control cells of the type (lower is better); e_distance_scaled: "
        "pertpy's compare_distance(mode='scaled'). See scgmvae.tl.evaluate_perturbation."
    )
    scgen_epochs = (
        f"{FULL_PEER_EPOCHS['scgen']} epochs" if args.full else "its script's default epochs"
    )
    methods_note = (
        "CGMVAE: predict_perturbation's defaults (route expression: each control cell plus its "
        "component's expression response at the cell's quantile; a held-out type borrows the "
        "responses of the types it resembles, its mean pulled half way to its decoded "
        "response, decoded_response_weight=0.5); 'borrowed response only': the same without "
        "the decoded response (decoded_response_weight=0, the earlier default); 'route z' "
        "moves the cell's z and decodes one draw, 'route w' decodes the component's mean "
        "from w (the thesis' route); "
        "'bandwidth b': the default route with response_bandwidth=b. Peers (each in its own "
        "Python, benchmarks/_peers.py and benchmarks/peers/README.md): pertpy 1.4's scGen, "
        f"{scgen_epochs} of batches of 32, on log1p CP10k; CPA: cpa-tools 0.8.8 with "
        "its Kang tutorial's settings (early stopping); trVAE and scPRAM as their tutorials; "
        "a peer whose Python was not set up for the run has no row. "
        f"scVI latent arithmetic and CGMVAE: {epochs} epochs. Model-free rows "
        "(benchmarks/_baselines.py; gene space, log1p CP10k of the training cells; a type's "
        "response is the mean of its stimulated minus the mean of its control cells): 'pooled "
        "shift' adds to the control cells the mean of the other types' responses, each type "
        "weighted alike (scPerturBench's trainMean); 'similarity-weighted shift' adds the other "
        "types' responses weighted by a softmax of r / 0.05, r the Pearson correlation of the "
        "type's control mean with the held-out type's (over the genes); 'nearest-type shift' "
        "adds the response of the most correlated type alone; 'control as prediction' is the "
        "control cells. 'noise ceiling': scgmvae.tl.noise_ceiling, half of the held-out type's "
        "real stimulated cells scored as the prediction of the other half, mean of 5 random "
        "splits. 'borrowing bound' (uses the answer, like the ceiling): the control cells plus "
        "the non-negative least-squares combination of the other types' responses closest to "
        "the real response over all genes (benchmarks/_baselines.py). Mean ± sd over seeds, "
        "then each seed."
    )
    if args.dispersion != "gene":
        methods_note += (
            f" CGMVAE here with dispersion={args.dispersion!r} (the negative binomial's inverse "
            "dispersion decoded from z for each cell and gene); the peers and scVI are left out, "
            "as the dispersion does not change them: their rows on the same splits and seeds "
            "are in the section of the default (the same command without --dispersion)."
        )
    complete = complete_types(frame)
    over = "the held-out types (and seeds)"
    if len(complete) < len(done):
        missing = {
            cell_type: sorted(set(frame["method"]) - set(type_rows["method"]))
            for cell_type, type_rows in frame.groupby("cell_type")
            if cell_type not in complete
        }
        over = (
            f"the held-out types that every method ran on ({', '.join(complete)}; and seeds), "
            "so that a missing row moves no mean ("
            + "; ".join(f"{t}: no {', '.join(m)}" for t, m in missing.items())
            + ")"
        )
    body = (
        f"The headline scores above and every mean over types below are means over {over}, "
        "with the training seconds.\n\n"
        f"Every score, mean over the held-out types and seeds:\n\n{summary.to_markdown()}\n\n"
        f"LFC R² on the top-100 DEGs per held-out type (mean over seeds):\n\n"
        f"{_wide(frame, 'r2_lfc_top_degs').to_markdown()}\n\n"
        f"{_published_note(frame) if args.scperturbench else ''}"
        "The types behind the similarity-weighted shift (the most correlated type, its Pearson "
        f"r, and the three largest weights):\n\n{_similarity_notes(similarity)}\n\n"
        f"Every score per held-out type and method:\n\n{per_type.to_markdown()}\n\n"
        f"{deg_note}\n\n{methods_note}"
    )
    write_section(
        section,
        title,
        f"python benchmarks/perturbation.py --max-epochs {epochs} --seeds {len(seeds)}{options}",
        headline,
        body,
        lead=lead,
    )


if __name__ == "__main__":
    main()
