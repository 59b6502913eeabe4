"""Batch integration, label transfer across donors and DE: GMVAE against Harmony, scVI, scANVI.

1. Integration of the five Kang donors (control cells, ``kang_5donors_ctrl.h5ad`` in
   ``SCGMVAE_DATA_DIR``): unintegrated PCA, Harmony, scVI, scANVI, GMVAE without and with
   labels, scored with scib-metrics' ``Benchmarker`` (its default metrics, raw scores).
2. Label transfer: labels of the largest donors, predicted in the two smallest; GMVAE
   semi-supervised against scANVI.
3. DE of stimulated against control CD14 monocytes (embedded Kang subset): how many of the 100
   strongest Wilcoxon genes of the real cells CGMVAE's and scVI's ``differential_expression``
   rank in their top 100, under several rankings.

    python benchmarks/integration.py            # 3 seeds -> integration page (DE: perturbation)
    python benchmarks/integration.py --smoke --data stand_in.h5ad    # tiny, writes nothing

Parts 1 and 2 need scib-metrics and harmonypy (``pip install scib-metrics harmonypy``); in
``--smoke`` mode a missing one is skipped with a line saying so. A stand-in for ``--data`` has
the layout of the real file: raw counts in ``.X``, ``obs["batch"]`` with at least three donors
and ``obs["cell_type"]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import scvi
from _common import dispersion_suffix, kang, mean_sd, setup_threads, write_section
from scipy.stats import pearsonr
from sklearn.metrics import f1_score

import scgmvae
from scgmvae.module._constants import DISPERSIONS

DATA_FILE = "kang_5donors_ctrl.h5ad"
DATA_DIR_ENV = "SCGMVAE_DATA_DIR"
BATCH_KEY = "batch"
LABELS_KEY = "cell_type"
TRANSFER_KEY = "transfer_labels"
UNKNOWN = "Unknown"
N_TOP_GENES = 2000
N_PCS = 50
TARGET_SUM = 1e4
# seurat_v3's per-donor loess fails on genes seen in a handful of cells (small stand-ins); every
# gene of the real file is in at least 243 cells, so this keeps all of them
MIN_CELLS_PER_GENE = 10
# the smallest donors are the query of the label transfer, the others the reference
N_QUERY_DONORS = 2
# scANVI after scVI: a fifth of the scVI epochs (scvi-tools' own default is 10 at this size)
SCANVI_EPOCH_SHARE = 5
# weight of the batch adversary in the adversarial GMVAE rows (the table's note says why)
ADVERSARIAL_SCALE = 10.0
PARTS = ("integration", "label_transfer", "de")
SMOKE_EPOCHS = 2

# DE: stimulated against control within one cell type of the embedded Kang subset
DE_CELL_TYPE = "CD14 Mono"
N_DEGS = 100
N_TOP_ISGS = 30
INTERFERON_GENES = (
    "ISG15",
    "IFI6",
    "IFIT1",
    "IFIT3",
    "MX1",
    "ISG20",
    "IFITM3",
    "LY6E",
    "RSAD2",
    "OAS1",
    "IFIT2",
    "MX2",
    "CXCL10",
)
# the ranking scVI users apply to scvi-tools' DE table (its default mode, its own sort order,
# genes up in group 1): the headline rows and the interferon-gene table use it
CHOSEN_RANKING = "change, proba_de (up)"
OBSERVED_PSEUDOCOUNT = 0.1
"""CP10k added to both groups' mean expression before the observed log2 fold change."""
EXPRESSED_CP10K = 1.0
"""Genes whose two group means sum to more than this count as expressed."""


# -- data ------------------------------------------------------------------------------------


def data_path(explicit: str | None) -> Path:
    """The 5-donor file: ``--data``, else ``$SCGMVAE_DATA_DIR``; exits with where it looked."""
    if explicit:
        path, where = Path(explicit), "--data"
    elif os.environ.get(DATA_DIR_ENV):
        path, where = Path(os.environ[DATA_DIR_ENV]) / DATA_FILE, f"${DATA_DIR_ENV}"
    else:
        sys.exit(
            f"integration.py: {DATA_FILE} not found: {DATA_DIR_ENV} is not set and no --data was "
            f"given. Set {DATA_DIR_ENV} to the folder that holds {DATA_FILE} or pass --data PATH "
            "(or run only --parts de)."
        )
    if not path.is_file():
        sys.exit(
            f"integration.py: {DATA_FILE} not found: looked for {path.resolve()} (from {where}). "
            f"Set {DATA_DIR_ENV} to the folder that holds {DATA_FILE} or pass --data PATH."
        )
    return path


def load_donors(path: Path):
    """Counts of the donors on 2,000 HVGs (seurat_v3 with the donor as batch)."""
    adata = sc.read_h5ad(path)
    missing = {BATCH_KEY, LABELS_KEY} - set(adata.obs)
    if missing:
        sys.exit(f"integration.py: {path} lacks obs columns {sorted(missing)}.")
    if adata.obs[BATCH_KEY].nunique() <= N_QUERY_DONORS:
        sys.exit(
            f"integration.py: {path} needs more than {N_QUERY_DONORS} donors in "
            f"obs[{BATCH_KEY!r}] (the {N_QUERY_DONORS} smallest are the label-transfer query)."
        )
    for key in (BATCH_KEY, LABELS_KEY):
        adata.obs[key] = adata.obs[key].astype(str).astype("category")
    sc.pp.filter_genes(adata, min_cells=MIN_CELLS_PER_GENE)
    sc.pp.highly_variable_genes(
        adata, n_top_genes=N_TOP_GENES, flavor="seurat_v3", batch_key=BATCH_KEY, subset=True
    )
    return adata


def unintegrated_pca(adata) -> np.ndarray:
    """50 principal components of log1p CP10k (fewer on a tiny stand-in)."""
    lognorm = adata.copy()
    sc.pp.normalize_total(lognorm, target_sum=TARGET_SUM)
    sc.pp.log1p(lognorm)
    n_comps = min(N_PCS, lognorm.n_obs - 1, lognorm.n_vars - 1)
    sc.pp.pca(lognorm, n_comps=n_comps, random_state=0)
    return lognorm.obsm["X_pca"]


def missing_package(module: str) -> str | None:
    """A skip line when ``module`` cannot be imported, else None."""
    if importlib.util.find_spec(module) is None:
        package = {"scib_metrics": "scib-metrics"}.get(module, module)
        return f"{package} is not installed (pip install {package})"
    return None


# -- methods ---------------------------------------------------------------------------------


def harmony(pca: np.ndarray, obs: pd.DataFrame, seed: int) -> np.ndarray:
    import harmonypy

    result = harmonypy.run_harmony(pca, obs, BATCH_KEY, random_state=seed, verbose=False, ncores=1)
    corrected = np.asarray(result.Z_corr)
    # harmonypy has returned both orientations across versions
    return corrected if corrected.shape[0] == len(obs) else corrected.T


def train_scvi(adata, seed: int, epochs: int, batch_key: str | None = BATCH_KEY):
    scvi.settings.seed = seed
    adata = adata.copy()
    scvi.model.SCVI.setup_anndata(adata, batch_key=batch_key)
    model = scvi.model.SCVI(adata)
    model.train(max_epochs=epochs, enable_progress_bar=False)
    return model


def train_scanvi(vae, labels_key: str, seed: int, epochs: int):
    """scANVI from a trained scVI, labels from ``labels_key`` of the scVI's AnnData."""
    scvi.settings.seed = seed
    model = scvi.model.SCANVI.from_scvi_model(
        vae, unlabeled_category=UNKNOWN, labels_key=labels_key
    )
    model.train(max_epochs=max(2, epochs // SCANVI_EPOCH_SHARE), enable_progress_bar=False)
    return model


def train_gmvae(
    adata,
    seed: int,
    epochs: int,
    labels_key: str | None = None,
    adversarial_classifier: bool = False,
    **model_kwargs,
):
    scvi.settings.seed = seed
    adata = adata.copy()
    scgmvae.model.GMVAE.setup_anndata(adata, labels_key=labels_key, batch_key=BATCH_KEY)
    model = scgmvae.model.GMVAE(adata, **model_kwargs)
    model.train(
        max_epochs=epochs,
        adversarial_classifier=adversarial_classifier,
        plan_kwargs={"scale_adversarial_loss": ADVERSARIAL_SCALE}
        if adversarial_classifier
        else None,
        enable_progress_bar=False,
    )
    return model


def train_cgmvae_one_condition(adata, seed: int, epochs: int, **model_kwargs):
    """CGMVAE on control cells only: one condition, so a GMVAE with a constant extra input."""
    scvi.settings.seed = seed
    adata = adata.copy()
    adata.obs["condition"] = "control"
    scgmvae.model.CGMVAE.setup_anndata(
        adata, condition_key="condition", labels_key=LABELS_KEY, batch_key=BATCH_KEY
    )
    model = scgmvae.model.CGMVAE(adata, **model_kwargs)
    model.train(max_epochs=epochs, enable_progress_bar=False)
    return model


# -- part 1: integration ---------------------------------------------------------------------


def exact_neighbors(X: np.ndarray, k: int):
    """Exact kNN for scib-metrics (its default, pynndescent, is approximate and slow to JIT)."""
    from scib_metrics.nearest_neighbors import NeighborsResults
    from sklearn.neighbors import NearestNeighbors

    distances, indices = NearestNeighbors(n_neighbors=min(k, len(X))).fit(X).kneighbors(X)
    return NeighborsResults(indices=indices, distances=distances)


def scib_scores(
    adata, embeddings: dict[str, np.ndarray], pca: np.ndarray, smoke: bool = False
) -> pd.DataFrame:
    """Raw scib-metrics scores (no min-max scaling), one row per embedding.

    ``smoke`` leaves out kBET and BRAS, whose JAX compilation alone takes minutes.
    """
    from scib_metrics.benchmark import BatchCorrection, Benchmarker

    adata = adata.copy()
    adata.obsm["X_pre"] = pca
    for name, embedding in embeddings.items():
        adata.obsm[name] = embedding
    bench = Benchmarker(
        adata,
        batch_key=BATCH_KEY,
        label_key=LABELS_KEY,
        embedding_obsm_keys=list(embeddings),
        pre_integrated_embedding_obsm_key="X_pre",
        batch_correction_metrics=BatchCorrection(bras=not smoke, kbet_per_label=not smoke),
        progress_bar=False,
    )
    bench.prepare(neighbor_computer=exact_neighbors)
    bench.benchmark()
    results = bench.get_results(min_max_scale=False)
    return results.drop(index="Metric Type").astype(float)


# -- part 2: label transfer ------------------------------------------------------------------


def transfer_split(adata) -> tuple[list[str], np.ndarray]:
    """Reference donors (all but the smallest two) and the mask of query cells."""
    sizes = adata.obs[BATCH_KEY].value_counts()
    reference = [str(d) for d in sizes.index[: len(sizes) - N_QUERY_DONORS]]
    query = ~adata.obs[BATCH_KEY].astype(str).isin(reference).to_numpy()
    return reference, query


def transfer_scores(predicted, truth: np.ndarray, query: np.ndarray) -> dict[str, float]:
    predicted = np.asarray(predicted).astype(str)
    return {
        "accuracy": float(np.mean(predicted[query] == truth[query])),
        "macro F1": float(f1_score(truth[query], predicted[query], average="macro")),
    }


# -- one seed of parts 1 and 2 ---------------------------------------------------------------


def run_donor_seed(
    adata, pca, seed, epochs, parts, with_cgmvae, skips, dispersion="gene"
) -> tuple[dict, list]:
    """Embeddings (part 1) and label-transfer scores (part 2) of one seed; ``dispersion`` is
    that of our models."""
    embeddings, transfer = {}, []
    truth = adata.obs[LABELS_KEY].astype(str).to_numpy()
    _, query = transfer_split(adata)
    adata = adata.copy()
    adata.obs[TRANSFER_KEY] = np.where(query, UNKNOWN, truth)
    timer = Timer(seed)
    ours = {"dispersion": dispersion}

    if "integration" in parts and "harmonypy" not in skips:
        embeddings["Harmony"] = timer(harmony, "Harmony", pca, adata.obs, seed)
    vae = timer(train_scvi, "scVI", adata, seed, epochs)
    if "integration" in parts:
        embeddings["scVI"] = vae.get_latent_representation()
        # every cell labelled, as scib's benchmarks train scANVI for bio conservation
        scanvi = timer(train_scanvi, "scANVI", vae, LABELS_KEY, seed, epochs)
        embeddings["scANVI"] = scanvi.get_latent_representation()
        gmvae = timer(
            train_gmvae, "GMVAE", adata, seed, epochs, n_components=len(set(truth)), **ours
        )
        embeddings["GMVAE"] = gmvae.get_latent_representation()
        gmvae = timer(
            train_gmvae, "GMVAE labels", adata, seed, epochs, labels_key=LABELS_KEY, **ours
        )
        embeddings["GMVAE, labels"] = gmvae.get_latent_representation()
        for labels_key, name in (
            (None, "GMVAE, adversarial"),
            (LABELS_KEY, "GMVAE, labels, adversarial"),
        ):
            gmvae = timer(
                train_gmvae,
                name,
                adata,
                seed,
                epochs,
                labels_key=labels_key,
                adversarial_classifier=True,
                n_components=len(set(truth)),
                **ours,
            )
            embeddings[name] = gmvae.get_latent_representation()
        if with_cgmvae:
            cgmvae = timer(train_cgmvae_one_condition, "CGMVAE", adata, seed, epochs, **ours)
            embeddings["CGMVAE, labels (1 condition)"] = cgmvae.get_latent_representation()
    if "label_transfer" in parts:
        scanvi = timer(train_scanvi, "scANVI transfer", vae, TRANSFER_KEY, seed, epochs)
        transfer.append(
            {"method": "scANVI", "seed": seed, **transfer_scores(scanvi.predict(), truth, query)}
        )
        gmvae = timer(train_gmvae, "GMVAE transfer", adata, seed, epochs, TRANSFER_KEY, **ours)
        transfer.append(
            {"method": "GMVAE", "seed": seed, **transfer_scores(gmvae.predict(), truth, query)}
        )
        print(transfer[-2:], flush=True)
    return embeddings, transfer


class Timer:
    """Runs a step and prints how long it took (wall time on a shared machine)."""

    def __init__(self, seed: int):
        self.seed = seed

    def __call__(self, fn, name: str, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        print(f"seed {self.seed}: {name} {time.perf_counter() - start:.0f} s", flush=True)
        return result


# -- part 3: DE ------------------------------------------------------------------------------


def de_rankings(table: pd.DataFrame, mode: str) -> dict[str, list[str]]:
    """Gene orders of one DE table: up in group 1 (stimulated), or either direction."""
    if mode == "vanilla":
        # vanilla's Bayes factor already means "higher in group 1"; it reports no lfc, so the
        # fold-change of the mean decoded expressions stands in for it
        ratio = np.log2(table["scale1"] / table["scale2"])
        return {
            "vanilla, bayes_factor (up)": _descending(table["bayes_factor"]),
            "vanilla, log2(scale1/scale2) (up)": _descending(ratio),
        }
    up = table[table["lfc_mean"] > 0]
    # proba_de saturates at 1 for the strongest genes: the fold-change orders those
    by_proba = up.sort_values(["proba_de", "lfc_mean"], ascending=False).index
    by_proba_any = table.assign(abs_lfc=table["lfc_mean"].abs()).sort_values(
        ["proba_de", "abs_lfc"], ascending=False
    )
    return {
        "change, proba_de (up)": list(by_proba),
        "change, lfc_mean (up)": _descending(table["lfc_mean"]),
        "change, proba_de (either direction)": list(by_proba_any.index),
        "change, |lfc_mean| (either direction)": _descending(table["lfc_mean"].abs()),
    }


def _descending(values: pd.Series) -> list[str]:
    return list(values.sort_values(ascending=False, kind="stable").index)


def lfc_agreement(table: pd.DataFrame) -> dict[str, float]:
    """Pearson r of a change-mode table's ``lfc_mean`` with the cells' observed log2 fold change.

    The observed change is that of the mean CP10k expression of the two groups (scvi-tools'
    ``raw_normalized_mean`` columns), over every gene and over the expressed ones.
    """
    means1, means2 = table["raw_normalized_mean1"], table["raw_normalized_mean2"]
    observed = np.log2((means1 + OBSERVED_PSEUDOCOUNT) / (means2 + OBSERVED_PSEUDOCOUNT))
    expressed = (means1 + means2) > EXPRESSED_CP10K
    return {
        "all genes": pearsonr(table["lfc_mean"], observed)[0],
        "expressed genes": pearsonr(table["lfc_mean"][expressed], observed[expressed])[0],
    }


def wilcoxon_degs(adata, idx1: np.ndarray, idx2: np.ndarray) -> dict[str, list[str]]:
    """The real cells' strongest Wilcoxon genes: up in stimulated, and by absolute score."""
    up = scgmvae.tl.top_degs(adata[idx1], adata[idx2], n_genes=N_DEGS)
    lognorm = adata[idx1 | idx2].copy()
    sc.pp.normalize_total(lognorm, target_sum=TARGET_SUM)
    sc.pp.log1p(lognorm)
    lognorm.obs["_group"] = np.where(idx1[idx1 | idx2], "stimulated", "control")
    sc.tl.rank_genes_groups(
        lognorm,
        "_group",
        groups=["stimulated"],
        reference="control",
        method="wilcoxon",
        n_genes=lognorm.n_vars,
    )
    ranked = sc.get.rank_genes_groups_df(lognorm, "stimulated")
    either = ranked.assign(abs_score=ranked["scores"].abs()).sort_values(
        "abs_score", ascending=False
    )
    return {"up": up, "either direction": list(either["names"])}


def run_de_seed(adata, idx1, idx2, truth, seed: int, epochs: int) -> tuple[list, dict, list]:
    """Overlaps of every ranking with the Wilcoxon top genes, each method's top ISGs, and the
    agreement of its change-mode fold changes with the observed ones."""
    scvi.settings.seed = seed
    ours = adata.copy()
    scgmvae.model.CGMVAE.setup_anndata(ours, condition_key="condition", labels_key="cell_type")
    cgmvae = scgmvae.model.CGMVAE(ours)
    cgmvae.train(max_epochs=epochs, enable_progress_bar=False)
    models = {"CGMVAE": cgmvae, "scVI": train_scvi(adata, seed, epochs, batch_key=None)}
    rows, isgs, agreement = [], {}, []
    for name, model in models.items():
        for mode in ("vanilla", "change"):
            scvi.settings.seed = seed
            table = model.differential_expression(idx1=idx1, idx2=idx2, mode=mode, silent=True)
            if mode == "change":
                for genes, r in lfc_agreement(table).items():
                    agreement.append({"method": name, "genes": genes, "seed": seed, "r": r})
            for ranking, genes in de_rankings(table, mode).items():
                kind = "either direction" if "either" in ranking else "up"
                overlap = len(set(genes[:N_DEGS]) & set(truth[kind][:N_DEGS]))
                rows.append({"method": name, "ranking": ranking, "seed": seed, "overlap": overlap})
                if ranking == CHOSEN_RANKING:
                    isgs[name] = [g for g in genes[:N_TOP_ISGS] if g in INTERFERON_GENES]
    print(rows, isgs, agreement, flush=True)
    return rows, isgs, agreement


# -- tables ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny run that checks the code")
    parser.add_argument("--max-epochs", type=int, default=50, help="every neural model")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data", help=f"the 5-donor file (default: ${DATA_DIR_ENV}/{DATA_FILE})")
    parser.add_argument("--parts", nargs="*", choices=PARTS, default=list(PARTS))
    parser.add_argument(
        "--with-cgmvae",
        action="store_true",
        help="add CGMVAE (one condition: a GMVAE with a constant input) to the integration",
    )
    parser.add_argument(
        "--dispersion",
        default="gene",
        choices=DISPERSIONS,
        help="our models' dispersion; other than the default the integration and label "
        "transfer parts write their own sections",
    )
    args = parser.parse_args()
    setup_threads()
    seeds, epochs = range(args.seeds), args.max_epochs
    if args.smoke:
        seeds, epochs = range(1), SMOKE_EPOCHS
    parts = set(args.parts)

    skips = {}
    if parts & {"integration", "label_transfer"}:
        path = data_path(args.data)
        for module in ("scib_metrics", "harmonypy"):
            if "integration" in parts and (reason := missing_package(module)):
                if not args.smoke:
                    sys.exit(f"integration.py: {reason}; the integration part needs it.")
                skips[module] = reason
                print(f"skipped: {module} ({reason})", flush=True)
        adata = load_donors(path)
        pca = unintegrated_pca(adata)
        scores, transfer = [], []
        for seed in seeds:
            embeddings, rows = run_donor_seed(
                adata, pca, seed, epochs, parts, args.with_cgmvae, skips, args.dispersion
            )
            transfer += rows
            if "integration" not in parts:
                continue
            if seed == seeds[0]:
                # the PCA does not depend on the seed: scored once, shown for every seed
                embeddings = {"Unintegrated (PCA)": pca, **embeddings}
            if "scib_metrics" in skips:
                print(f"integration metrics skipped: {skips['scib_metrics']}", flush=True)
                continue
            start = time.perf_counter()
            frame = scib_scores(adata, embeddings, pca, args.smoke)
            print(f"seed {seed}: scib-metrics {time.perf_counter() - start:.0f} s", flush=True)
            print(frame.to_string(), flush=True)
            scores.append(frame.assign(seed=seed))
        if scores:
            write_integration(pd.concat(scores), adata, args, epochs, len(seeds))
        if transfer:
            write_transfer(pd.DataFrame(transfer), adata, args, epochs, len(seeds))

    if "de" in parts:
        run_de(args, seeds, epochs)


def _command(args, epochs: int, n_seeds: int, part: str) -> str:
    extra = " --with-cgmvae" if args.with_cgmvae and part == "integration" else ""
    extra += f" --dispersion {args.dispersion}" if args.dispersion != "gene" else ""
    return (
        f"python benchmarks/integration.py --max-epochs {epochs} --seeds {n_seeds} "
        f"--parts {part}{extra}"
    )


def write_integration(frame: pd.DataFrame, adata, args, epochs: int, n_seeds: int) -> None:
    frame.index.name = "method"
    pca_name = "Unintegrated (PCA)"
    # the PCA row of the first seed stands for every seed
    pca_rows = frame.loc[[pca_name]]
    frame = pd.concat(
        [frame.drop(index=pca_name)]
        + [pca_rows.assign(seed=s) for s in sorted(frame["seed"].unique())]
    )
    metrics = [c for c in frame.columns if c != "seed"]
    order = list(dict.fromkeys(frame.index))
    order = [pca_name] + [m for m in order if m != pca_name]
    if args.smoke:
        print(frame.to_string())
        return
    table = frame.groupby(level=0)[metrics].agg(mean_sd).loc[order]
    per_seed = frame.reset_index().set_index(["method", "seed"])[metrics].loc[order]
    n_donors, n_types = adata.obs[BATCH_KEY].nunique(), adata.obs[LABELS_KEY].nunique()
    write_section(
        "integration" + dispersion_suffix(args.dispersion),
        f"Batch integration (Kang control cells, {adata.n_obs:,} cells, {n_donors} "
        f"donors{_dispersion_label(args)})",
        _command(args, epochs, n_seeds, "integration"),
        table,
        f"{DATA_FILE} (muscat's Kang data, control cells; donor = batch), "
        f"{n_types} cell types, {N_TOP_GENES:,} HVGs (seurat_v3 on "
        "counts, batch_key='batch') for every method. Unintegrated: 50 PCs of log1p CP10k "
        "(deterministic: scored once). Harmony: harmonypy on those PCs, donor as batch, "
        "random_state = seed. scVI: batch_key='batch', defaults. scANVI: from that scVI with "
        "every cell labelled (as scib's benchmarks train it for bio conservation), trained for "
        f"max(2, epochs/{SCANVI_EPOCH_SHARE}) more epochs. GMVAE: batch_key='batch', "
        f"unsupervised with {n_types} components; 'labels': every cell labelled (the "
        f"counterpart of scANVI); 'adversarial': train(adversarial_classifier=True) with "
        f"scale_adversarial_loss={ADVERSARIAL_SCALE:g} (seed 0, batch / bio score at scales 1, "
        "3, 5, 10: 0.704 / 0.787, 0.737 / 0.867, 0.727 / 0.791, 0.761 / 0.842; without the "
        "adversary 0.667 / 0.879; only 10 passed Harmony's batch score). "
        f"{epochs} epochs for every neural model.{_dispersion_note(args)} Latents: posterior "
        "means of z. "
        "CGMVAE is left out: with control cells only it has one condition, whose one-hot input "
        "and learned shift are constants, so it is the GMVAE with labels plus redundant biases "
        "(--with-cgmvae adds it). "
        "Scores: scib-metrics' Benchmarker with its default metrics and exact neighbours "
        "(scikit-learn), get_results(min_max_scale=False), so raw scores comparable across "
        "runs. Bio conservation: isolated labels, KMeans NMI/ARI, silhouette label (cell-type "
        "ASW), cLISI; batch correction: BRAS (scib-metrics' batch silhouette since 0.5, in place "
        "of silhouette_batch), iLISI, kBET per label, graph connectivity, PCR comparison "
        "(against the unintegrated PCs, so 0 for them); each score is the mean of its metrics "
        "and Total = 0.4 batch + 0.6 bio. Mean ± sd over seeds (each seed's value in "
        "brackets); every seed's values:\n\n" + per_seed.round(3).to_markdown() + "\n",
    )


def write_transfer(frame: pd.DataFrame, adata, args, epochs: int, n_seeds: int) -> None:
    if args.smoke:
        print(frame.to_string())
        return
    reference, query = transfer_split(adata)
    query_donors = sorted(set(adata.obs[BATCH_KEY].astype(str)[query]))
    table = frame.groupby("method", sort=False)[["accuracy", "macro F1"]].agg(mean_sd)
    write_section(
        "label_transfer" + dispersion_suffix(args.dispersion),
        f"Label transfer across donors (Kang control cells{_dispersion_label(args)})",
        _command(args, epochs, n_seeds, "label_transfer"),
        table,
        f"Labels of the {len(reference)} largest donors ({', '.join(reference)}) known, those of "
        f"donors {', '.join(query_donors)} ({int(query.sum()):,} cells) set to 'Unknown'; "
        "accuracy and macro F1 on those cells. Both methods see every cell with the donor as "
        f"batch key ({N_TOP_GENES:,} HVGs). GMVAE: labels_key with the query set to 'Unknown', "
        f"batch_key='batch', {epochs} epochs (labelled_share='auto': no rebalancing at this "
        "share of labels). scANVI: SCANVI.from_scvi_model(unlabeled_category='Unknown') on the "
        f"scVI of the integration table ({epochs} epochs), then max(2, epochs/"
        f"{SCANVI_EPOCH_SHARE}) epochs.{_dispersion_note(args)} Mean ± sd over seeds (each "
        "seed's value in brackets).",
    )


def _dispersion_label(args) -> str:
    return "" if args.dispersion == "gene" else f", our models with dispersion={args.dispersion!r}"


def _dispersion_note(args) -> str:
    if args.dispersion == "gene":
        return ""
    return (
        f" Our models here with dispersion={args.dispersion!r} (the negative binomial's inverse "
        "dispersion decoded from z for each cell and gene); the other methods as in the "
        "section of the default, trained again in this run."
    )


def run_de(args, seeds, epochs: int) -> None:
    adata = kang(N_TOP_GENES)
    cell_type = (adata.obs["cell_type"] == DE_CELL_TYPE).to_numpy()
    stimulated = (adata.obs["condition"] == "stimulated").to_numpy()
    idx1, idx2 = cell_type & stimulated, cell_type & ~stimulated
    truth = wilcoxon_degs(adata, idx1, idx2)
    wilcoxon_isgs = [g for g in truth["up"][:N_TOP_ISGS] if g in INTERFERON_GENES]
    rows, isgs, agreement = [], {}, []
    for seed in seeds:
        seed_rows, seed_isgs, seed_agreement = run_de_seed(adata, idx1, idx2, truth, seed, epochs)
        rows += seed_rows
        agreement += seed_agreement
        for name, genes in seed_isgs.items():
            isgs.setdefault(name, []).append(genes)
    frame = pd.DataFrame(rows)
    agreement_table = pd.DataFrame(agreement).pivot_table(
        index="genes", columns="method", values="r", aggfunc=mean_sd, sort=False
    )
    if args.smoke:
        print(frame.to_string())
        print(agreement_table.to_string())
        print("interferon genes in the top 30:", {"Wilcoxon": wilcoxon_isgs, **isgs})
        return
    table = frame.pivot_table(
        index="ranking",
        columns="method",
        values="overlap",
        aggfunc=lambda counts: mean_sd(counts, per_seed_format=".0f"),
        sort=False,
    )
    in_hvgs = [g for g in INTERFERON_GENES if g in adata.var_names]
    isg_rows = {"Wilcoxon (real cells)": [", ".join(wilcoxon_isgs)] * len(seeds)}
    for name, per_seed in isgs.items():
        isg_rows[name] = [f"{len(g)}: {', '.join(g)}" for g in per_seed]
    isg_table = pd.DataFrame(isg_rows, index=[f"seed {s}" for s in seeds]).T
    write_section(
        "de",
        f"Differential expression (Kang 832 cells, {DE_CELL_TYPE} stimulated vs control)",
        _command(args, epochs, len(seeds), "de"),
        table,
        f"How many of the {N_DEGS} strongest Wilcoxon genes of the real cells "
        f"({int(idx1.sum())} stimulated, {int(idx2.sum())} control {DE_CELL_TYPE} cells, log1p "
        f"CP10k, {N_TOP_GENES:,} HVGs) are in each model's top {N_DEGS}: rows marked 'up' are "
        "compared with the genes up in stimulated cells (scgmvae.tl.top_degs), the others with "
        "the top genes by absolute Wilcoxon score. CGMVAE: condition_key='condition', "
        "labels_key='cell_type', trained on all cells; scVI: no batch key. Both "
        f"{epochs} epochs, then differential_expression(idx1=stimulated {DE_CELL_TYPE}, "
        "idx2=control ones, mode=...) with the defaults otherwise. Rankings: vanilla mode by "
        "its Bayes factor (of 'higher in stimulated') or by log2 of the ratio of the mean decoded "
        "expressions (vanilla reports no lfc); change mode by proba_de "
        "among genes with lfc_mean > 0 (ties at proba_de = 1 ordered by lfc_mean; scvi-tools' "
        "default mode and sort order, as its tutorials pick markers), by lfc_mean, or in either "
        "direction by proba_de or |lfc_mean|. Mean ± sd over seeds (each seed's value in "
        f"brackets).\n\nInterferon-stimulated genes ({', '.join(INTERFERON_GENES)}; "
        f"{len(in_hvgs)} of them among the HVGs) in the top {N_TOP_ISGS} up-regulated genes "
        f"('{CHOSEN_RANKING}' for the models):\n\n"
        + isg_table.to_markdown()
        + "\n\nAgreement of each model's change-mode lfc_mean with the observed log2 fold "
        f"change of the cells' mean CP10k expression (pseudocount {OBSERVED_PSEUDOCOUNT:g}), "
        f"Pearson r over the {N_TOP_GENES:,} genes and over those expressed (the two group "
        f"means sum to more than {EXPRESSED_CP10K:g} CP10k):\n\n"
        + agreement_table.to_markdown()
        + "\n",
    )


if __name__ == "__main__":
    main()
