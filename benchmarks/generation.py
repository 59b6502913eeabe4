"""Synthetic cells against real ones: can a classifier tell ``generate()`` cells from real cells?

For each seed, a random part (:data:`HELD_OUT_FRACTION`) of the cells of every cell type x
condition is held out; CGMVAE (labels and condition registered, so one component per type) and
scVI train on the rest. For every type x condition with at least :data:`MIN_REAL_CELLS` real
cells, each method's cells are scored against the held-out real cells of that type and condition
with ``scgmvae.tl.generation_scores`` (a cross-validated logistic regression's AUC on the real
cells' principal components, the E-distance against the real-vs-real distance of two halves of
the held-out cells, and the R² of per-gene means, variances and zero fractions). With
``--draws``, every group is scored that many times with the same models (new synthetic cells,
and the classifier's subsample and folds drawn again each time), and each group's score is the
mean over the draws: one draw of a group of under 200 cells moves its AUC by several hundredths.
Methods:

- ``CGMVAE generate``: ``model.generate(components=[type], conditions=[condition],
  latent="prior")``, the thesis' route and ``generate()``'s default before ``latent="auto"``
  (each cell decoded from its component's mean ``z`` given a ``w`` drawn from the prior,
  counts drawn from the likelihood);
- ``CGMVAE generate sample_z``: the same with ``sample_z=True`` (``z`` drawn from the component);
- ``CGMVAE generate posterior``: ``generate(..., latent="posterior")`` (``z`` drawn from the
  aggregated posterior of the type x condition's training cells, with their library sizes):
  what the default, ``latent="auto"``, draws for every scored group, since each has enough
  training cells;
- ``CGMVAE posterior predictive``: ``model.posterior_predictive_sample`` of the real training
  cells of the type and condition (each cell's posterior ``z`` decoded at its own library size,
  counts drawn from the likelihood; no prior involved, so it shows what the decoder alone
  gives);
- ``scVI posterior predictive``: scVI's ``posterior_predictive_sample`` of the real training cells
  of the type and condition (what a scvi-tools user reaches for; it needs real cells to start
  from);
- ``real training cells``: the real cells of the type and condition the models trained on (the
  floor: what cells of the same kind score).

    python benchmarks/generation.py            # Kang 832 cells, 2,000 HVGs, 3 seeds
    python benchmarks/generation.py --full     # the full-size 6-donor file ($SCGMVAE_DATA_DIR)
    python benchmarks/generation.py --smoke    # 2 epochs, 1 seed (CI)
    python benchmarks/generation.py --full --seeds 1 --draws 5  # each group scored 5 times
"""

from __future__ import annotations

import argparse
import itertools
import textwrap
import time

import anndata
import numpy as np
import pandas as pd
import scvi
from _common import (
    DOCS,
    TITLE_WIDTH,
    dispersion_suffix,
    kang,
    mean_sd,
    setup_threads,
    write_section,
)

import scgmvae
from scgmvae.module._constants import DISPERSIONS

CONDITION, LABEL = "condition", "cell_type"
HELD_OUT_FRACTION = 0.4
"""Share of the cells of each type x condition held out as the real cells to compare with."""
MIN_REAL_CELLS = 100
"""Type x condition groups scored: those with at least this many real cells in the data."""
N_GENERATED = 500
"""Synthetic cells per group (the scores subsample the larger set to the smaller)."""
MAX_EPOCHS = {"kang": 200, "full": 100}
"""Epochs of CGMVAE and scVI: those of the perturbation benchmark on the same data."""
SCORES = (
    "classifier_auc",
    "classifier_auc_forest",
    "e_distance_ratio",
    "e_distance",
    "e_distance_real_split",
    "r2_mean",
    "r2_var",
    "r2_zero_fraction",
)
AUC_GOAL = 0.60
"""Issue 25's goal: a real-vs-synthetic AUC of at most this for every group."""
DRAW_STRIDE = 1000
"""Random state of the classifier for draw ``d`` of seed ``s``: ``s * DRAW_STRIDE + d``."""
RATIO_TICKS = (1, 1.5, 2, 3, 5, 10, 20, 50)
AUC_LIMITS = (0.35, 1.02)
"""Ticks of the log-scaled E-distance ratio axis of the figure."""
METHODS = (
    "CGMVAE generate",
    "CGMVAE generate sample_z",
    "CGMVAE generate posterior",
    "CGMVAE posterior predictive",
    "scVI posterior predictive",
    "real training cells",
)


def held_out_split(adata: anndata.AnnData, seed: int) -> np.ndarray:
    """A mask of the held-out cells: :data:`HELD_OUT_FRACTION` of each type x condition."""
    rng = np.random.default_rng(seed)
    held_out = np.zeros(adata.n_obs, dtype=bool)
    groups = adata.obs.groupby([LABEL, CONDITION], observed=True).indices
    for rows in groups.values():
        n_held_out = round(HELD_OUT_FRACTION * len(rows))
        held_out[rng.choice(rows, n_held_out, replace=False)] = True
    return held_out


def scored_groups(adata: anndata.AnnData) -> list[tuple[str, str]]:
    """The (type, condition) groups with at least :data:`MIN_REAL_CELLS` cells."""
    sizes = adata.obs.groupby([LABEL, CONDITION], observed=True).size()
    return [group for group, size in sizes.items() if size >= MIN_REAL_CELLS]


def _as_counts(cells: anndata.AnnData, counts: np.ndarray) -> anndata.AnnData:
    return anndata.AnnData(counts.astype(np.float32), obs=cells.obs.copy(), var=cells.var.copy())


def run_seed(
    adata: anndata.AnnData,
    seed: int,
    max_epochs: int,
    lr_decay_share: float = 0.0,
    draws: int = 1,
    dispersion: str = "gene",
) -> list[dict]:
    """Every method's scores for every scored group and draw, with one seed's split and models.

    ``lr_decay_share`` is passed to CGMVAE's training plan (the learning-rate decay) and
    ``dispersion`` to the model; each of the ``draws`` draws samples the synthetic cells and
    the classifier's folds again.
    """
    held_out = held_out_split(adata, seed)
    train, real = adata[~held_out].copy(), adata[held_out].copy()
    scvi.settings.seed = seed
    scgmvae.model.CGMVAE.setup_anndata(train, condition_key=CONDITION, labels_key=LABEL)
    cgmvae = scgmvae.model.CGMVAE(train, dispersion=dispersion)
    start = time.perf_counter()
    cgmvae.train(
        max_epochs=max_epochs,
        plan_kwargs={"lr_decay_share": lr_decay_share},
        enable_progress_bar=False,
    )
    print(f"seed {seed}: CGMVAE trained in {time.perf_counter() - start:.0f} s", flush=True)
    scvi_train = train.copy()
    scvi.model.SCVI.setup_anndata(scvi_train)
    scvi_model = scvi.model.SCVI(scvi_train, gene_likelihood="nb")
    scvi_model.train(max_epochs=max_epochs, enable_progress_bar=False)

    rows = []
    for (cell_type, condition), draw in itertools.product(scored_groups(adata), range(draws)):
        in_group = (train.obs[LABEL] == cell_type) & (train.obs[CONDITION] == condition)
        training_cells = train[in_group.to_numpy()].copy()
        group_rows = np.flatnonzero(in_group.to_numpy())
        posterior = scvi_model.posterior_predictive_sample(scvi_train, indices=group_rows)
        copies = cgmvae.posterior_predictive_sample(train, indices=group_rows)
        methods = {
            "CGMVAE generate": cgmvae.generate(
                N_GENERATED, conditions=[condition], components=[cell_type], latent="prior"
            ),
            "CGMVAE generate sample_z": cgmvae.generate(
                N_GENERATED, conditions=[condition], components=[cell_type], sample_z=True
            ),
            "CGMVAE generate posterior": cgmvae.generate(
                N_GENERATED, conditions=[condition], components=[cell_type], latent="posterior"
            ),
            "CGMVAE posterior predictive": _as_counts(training_cells, copies.todense()),
            "scVI posterior predictive": _as_counts(
                training_cells, np.asarray(posterior.todense())
            ),
            "real training cells": training_cells,
        }
        target = real[
            (real.obs[LABEL] == cell_type).to_numpy()
            & (real.obs[CONDITION] == condition).to_numpy()
        ]
        for method, cells in methods.items():
            scores = scgmvae.tl.generation_scores(
                cells, target.copy(), random_state=seed * DRAW_STRIDE + draw
            )
            rows.append(
                {
                    "cell_type": cell_type,
                    "condition": condition,
                    "seed": seed,
                    "draw": draw,
                    "method": method,
                    "n_real": target.n_obs,
                    **scores,
                }
            )
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()})
    return rows


def figure(frame: pd.DataFrame, path, title: str) -> None:
    """Per type x condition, each method's classifier AUC and E-distance ratio (large dot: mean
    over seeds; ticks: each seed), with the goals of issue 25 as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = frame.assign(group=frame["cell_type"] + ", " + frame["condition"])
    groups = list(dict.fromkeys(frame["group"]))
    palette = ["#3b5bdb", "#74c0fc", "#2f9e44", "#7048e8", "#d95f02", "#555555"]
    colors = dict(zip(METHODS, palette, strict=True))
    panels = {
        "classifier_auc": ("logistic regression's real-vs-synthetic AUC (0.5: as real)", 0.6),
        "classifier_auc_forest": ("random forest's real-vs-synthetic AUC (0.5: as real)", 0.6),
        "e_distance_ratio": ("E-distance / real-vs-real split E-distance (1: as real)", 1.5),
    }
    # one panel per row, so that each keeps the page's full width
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(10, len(panels) * (0.75 * len(groups) + 1.2)), squeeze=False
    )
    offsets = dict(zip(METHODS, np.linspace(-0.3, 0.3, len(METHODS)), strict=True))
    for ax, (metric, (label, goal)) in zip(axes[:, 0], panels.items(), strict=True):
        for y, group in enumerate(groups):
            if y % 2 == 0:
                ax.axhspan(y - 0.5, y + 0.5, color="#f3f3f3", zorder=0)
            for method in METHODS:
                values = frame.loc[
                    (frame["group"] == group) & (frame["method"] == method), metric
                ].to_numpy()
                yy = y + offsets[method]
                ax.scatter(values.mean(), yy, color=colors[method], s=60, zorder=4)
                if len(values) > 1:
                    ax.scatter(values, [yy] * len(values), color=colors[method], marker="|")
        ax.axvline(goal, color="black", ls="--", lw=1)
        ax.set_title(f"{label}\ndashed: the goal (at most {goal:g})", fontsize=10)
        ax.grid(axis="x", color="#dddddd", lw=0.6)
        ax.set_axisbelow(True)
        if metric == "e_distance_ratio":
            ax.set_xscale("log")
            ticks = [t for t in RATIO_TICKS if t <= frame[metric].max() * 1.2]
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
        else:  # both classifiers on one scale
            ax.set_xlim(*AUC_LIMITS)
        ax.set_yticks(range(len(groups)), groups)
        ax.set_ylim(len(groups) - 0.5, -0.5)
    handles = [plt.Line2D([], [], ls="", marker="o", color=colors[m], label=m) for m in METHODS]
    fig.tight_layout()
    # title and legend above the top panel, where a reader of a tall figure starts
    # (saved with a tight bounding box, which takes them in)
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=3,
        frameon=False,
        bbox_to_anchor=(0.5, 1.0),
        # wrapped to the panels' width, which a title of every option can exceed
        title=textwrap.fill(title, TITLE_WIDTH),
        title_fontsize=11,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="2 epochs, 1 seed (checks the code)")
    parser.add_argument("--full", action="store_true", help="the full-size 6-donor Kang file")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument(
        "--draws",
        type=int,
        default=1,
        help="score every group this many times with the same models (new synthetic cells, "
        "classifier folds) and report the mean; writes its own section",
    )
    parser.add_argument(
        "--dispersion",
        default="gene",
        choices=DISPERSIONS,
        help="CGMVAE's dispersion; other than the default it writes its own section",
    )
    parser.add_argument(
        "--lr-decay-share",
        type=float,
        default=0.0,
        help="train CGMVAE with this learning-rate decay (plan_kwargs lr_decay_share); "
        "writes its own section",
    )
    args = parser.parse_args()
    setup_threads()
    adata = kang(full=args.full)
    data = "full" if args.full else "kang"
    epochs = args.max_epochs or MAX_EPOCHS[data]
    seeds = range(args.seeds)
    if args.smoke:
        epochs, seeds = 2, range(1)
    draws = args.draws
    rows = [
        row
        for seed in seeds
        for row in run_seed(adata, seed, epochs, args.lr_decay_share, draws, args.dispersion)
    ]
    group_keys = ["cell_type", "condition", "n_real", "method", "seed"]
    # each group's score in a seed is its mean over the draws
    frame = pd.DataFrame(rows).groupby(group_keys, sort=False)[list(SCORES)].mean().reset_index()
    per_seed = frame.groupby(["method", "seed"], sort=False)[list(SCORES)].mean()
    summary = per_seed.groupby(level="method", sort=False).agg(mean_sd)
    per_group = {
        score: frame.pivot_table(
            index=["cell_type", "condition", "n_real"], columns="method", values=score, sort=False
        )[list(METHODS)]
        for score in ("classifier_auc", "classifier_auc_forest")
    }
    at_goal = pd.DataFrame(
        {name: table.le(AUC_GOAL).sum() for name, table in per_group.items()}
    ).rename_axis("method")
    if args.smoke:
        print(
            summary.to_string(),
            *(t.to_string() for t in per_group.values()),
            at_goal.to_string(),
            sep="\n\n",
        )
        return
    decay = args.lr_decay_share > 0
    section = (
        "generation"
        + ("_kang6" if args.full else "")
        + ("_lr_decay" if decay else "")
        + ("_draws" if draws > 1 else "")
        + dispersion_suffix(args.dispersion)
    )
    image = f"../_static/{section}.png"
    label = f"Kang 6 donors, {adata.n_obs:,} cells" if args.full else "Kang 832 cells"
    if decay:
        label += f", CGMVAE's learning rate decaying over the last {args.lr_decay_share:.0%}"
    decay_flag = f" --lr-decay-share {args.lr_decay_share:g}" if decay else ""
    draws_flag = f" --draws {draws}" if draws > 1 else ""
    dispersion_flag = f" --dispersion {args.dispersion}" if args.dispersion != "gene" else ""
    if dispersion_flag:
        label += f", CGMVAE with dispersion={args.dispersion!r}"
    if draws > 1:
        label += f", each group scored over {draws} draws"
    figure(
        frame,
        DOCS / "_static" / f"{section}.png",
        f"{label}, {adata.n_vars:,} HVGs: synthetic vs held-out real cells of each type and "
        f"condition, {len(seeds)} seeds, {epochs} epochs",
    )
    notes = (
        "Mean over the type x condition groups (each group's score the mean over its "
        f"{draws} draw{'s' if draws > 1 else ''}), then mean ± sd over seeds (each seed in "
        "brackets). Groups whose "
        f"AUC (mean over seeds and draws) is at most the goal of {AUC_GOAL:g}, of "
        f"{len(per_group['classifier_auc'])}:\n\n{at_goal.to_markdown()}\n\n"
        "Real-vs-synthetic AUC per group (mean over seeds and draws; n_real: held-out real "
        "cells of the group). Logistic regression:\n\n"
        f"{per_group['classifier_auc'].round(3).to_markdown()}\n\nRandom forest:\n\n"
        f"{per_group['classifier_auc_forest'].round(3).to_markdown()}\n\n"
        "Scores from scgmvae.tl.generation_scores, against the held-out real cells of the "
        "group: classifier_auc, a logistic regression on 50 principal components (log1p "
        "CP10k) of both sets, the larger subsampled to the size of the smaller, 5-fold "
        "cross-validated; classifier_auc_forest, a random forest on the same components and "
        "folds; e_distance, to one half of the held-out cells, and "
        "e_distance_real_split, between the two halves (same sizes, so the same "
        "finite-sample bias); r2_*: squared Pearson r over the genes of per-gene means, "
        "variances and zero fractions. Methods: "
        f"see the docstring of benchmarks/generation.py. {N_GENERATED} synthetic cells per "
        f"group; {HELD_OUT_FRACTION:.0%} of each type x condition held out; groups with at "
        f"least {MIN_REAL_CELLS} real cells."
    )
    write_section(
        section,
        f"Generated cells against real cells ({label}, {adata.n_vars:,} HVGs)",
        f"python benchmarks/generation.py{' --full' if args.full else ''} "
        f"--seeds {len(seeds)} --max-epochs {epochs}{decay_flag}{draws_flag}{dispersion_flag}",
        summary,
        notes,
        lead=f"![Per type and condition, each method's classifier AUCs and E-distance ratio]"
        f"({image})",
    )


if __name__ == "__main__":
    main()
