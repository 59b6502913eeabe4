"""Unsupervised clustering: GMVAE / CGMVAE against Leiden on PCA and Leiden on scVI's latent.

Datasets: the 832-cell Kang file (``cell_type``, raw counts on 2,000 HVGs, NB likelihood),
scanpy's ``pbmc68k_reduced`` (``bulk_labels``, its scaled ``.X`` with the Gaussian likelihood:
it ships no counts) and ``toy_blobs`` (``cell_type``, counts). Methods: GMVAE and CGMVAE with K
= the number of labels, trained by one default ``train()`` (cluster initialisation) and from a
random start (``cluster_init=False``) and with a dispersion per cell
(``dispersion="gene-cell"``), the thesis' own setting on count data (GMVAE K with the
Gaussian likelihood on log1p CP10k), the two-stage Leiden-guided recipe (thesis §5.5: Leiden
clusters of a first model's ``z`` as labels, then unsupervised), Leiden on PCA (scanpy
defaults: log1p CP10k for counts, 50 PCs, 15 neighbours, resolution 1), Leiden on the latent
space of scVI, and the second seed report's autoencoder, beta-VAE and beta-VSC with k-means.
Labels are never shown to any method; scores from ``scgmvae.tl.clustering_scores``.

    python benchmarks/clustering.py            # 3 data sets x 3 seeds -> clustering page
    python benchmarks/clustering.py --smoke    # toy data, 1 seed, 2 epochs (CI)

Clusters are kept in ``benchmarks/.cache`` (``_cache.py``), so runs over disjoint
``--datasets`` can go in parallel before one run over all of them writes the table.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

import _cache
import anndata
import numpy as np
import pandas as pd
import scanpy as sc
import scvi
from _common import kang, mean_sd, setup_threads, write_section
from _seed_models import seed_model_clusters

import scgmvae

METRICS = (
    "ari",
    "nmi",
    "homogeneity",
    "completeness",
    "accuracy_majority",
    "accuracy_hungarian",
    "n_clusters",
)


def load(name: str) -> tuple[sc.AnnData, str, str]:
    """The data, its label column and the likelihood to use."""
    if name == "kang":
        return kang(), "cell_type", "nb"
    if name == "pbmc68k":
        return sc.datasets.pbmc68k_reduced(), "bulk_labels", "normal"
    return scgmvae.datasets.toy_blobs(counts=True, seed=0), "cell_type", "nb"


def leiden_on(latent: np.ndarray, seed: int) -> np.ndarray:
    """Leiden clusters of a latent space, with ``scgmvae.tl.leiden_clusters``' settings."""
    work = anndata.AnnData(obsm={"X_latent": latent})
    return scgmvae.tl.leiden_clusters(work, use_rep="X_latent", seed=seed).to_numpy()


def cluster(method: str, adata, label_key: str, likelihood: str, seed: int, epochs: int):
    """Clusters of one method on one dataset (None when the method does not apply)."""
    n_labels = adata.obs[label_key].nunique()
    scvi.settings.seed = seed
    if method == "Leiden on PCA":
        return scgmvae.tl.leiden_clusters(adata, seed=seed).to_numpy()
    if method == "scVI + Leiden":
        if likelihood == "normal":  # scVI models counts; on scaled data its training diverges
            return None
        work = adata.copy()
        scvi.model.SCVI.setup_anndata(work)
        model = scvi.model.SCVI(work, gene_likelihood=likelihood)
        model.train(max_epochs=epochs, enable_progress_bar=False)
        return leiden_on(model.get_latent_representation(), seed)
    if method.endswith(KMEANS):  # the second seed report's models (benchmarks/_seed_models.py)
        name = method.removesuffix(KMEANS)
        return seed_model_clusters(name, adata, n_labels, seed, epochs, likelihood)
    name, _, variant = method.partition(" ")
    if (name == "CGMVAE" or variant.endswith(CONDITION_AS_BATCH)) and "condition" not in adata.obs:
        return None
    model_cls = getattr(scgmvae.model, name)
    work = adata.copy()
    if variant.endswith(GAUSSIAN):
        if likelihood == "normal":  # the plain K row already is the thesis' setting
            return None
        work, likelihood = scgmvae.tl.log_normalize(work), "normal"
        variant = variant.removesuffix(GAUSSIAN)
    setup = {}
    if name == "CGMVAE":
        setup = {"condition_key": "condition"}
    elif variant.endswith(CONDITION_AS_BATCH):
        setup = {"batch_key": "condition"}
    kwargs = {"gene_likelihood": likelihood}
    if variant.endswith(DISPERSION_PER_CELL):
        if likelihood != "nb":  # only the negative binomial has a dispersion
            return None
        kwargs["dispersion"] = "gene-cell"
        variant = variant.removesuffix(DISPERSION_PER_CELL)
    if variant.startswith("Leiden-guided"):
        use_rep = None
        if variant == OWN_LATENT:
            model_cls.setup_anndata(work, **setup)
            first = model_cls(work, n_components=n_labels, **kwargs)
            first.train(max_epochs=epochs, enable_progress_bar=False)
            scgmvae.tl.embed(first, work)
            use_rep = "X_scgmvae_z"
        work.obs["leiden"] = scgmvae.tl.leiden_clusters(work, use_rep=use_rep, seed=seed)
        model_cls.setup_anndata(work, labels_key="leiden", **setup)
        model = model_cls(work, **kwargs)
        scgmvae.tl.leiden_guided_train(
            model,
            supervised_epochs=epochs // 2,
            unsupervised_epochs=epochs - epochs // 2,
            enable_progress_bar=False,
        )
    else:
        model_cls.setup_anndata(work, **setup)
        model = model_cls(work, n_components=n_labels, **kwargs)
        cluster_init = not variant.endswith(RANDOM_START)
        model.train(max_epochs=epochs, enable_progress_bar=False, cluster_init=cluster_init)
    return model.predict(return_components=True)


GAUSSIAN = ", Gaussian on log1p"
RANDOM_START = ", random start"
CONDITION_AS_BATCH = ", condition as batch"
DISPERSION_PER_CELL = ", dispersion per cell"
OWN_LATENT = "Leiden-guided on own z"
KMEANS = " + k-means"
METHODS = (
    "GMVAE K",
    f"GMVAE K{CONDITION_AS_BATCH}",
    f"GMVAE K{RANDOM_START}",
    f"GMVAE K{GAUSSIAN}",
    f"GMVAE K{DISPERSION_PER_CELL}",
    "CGMVAE K",
    f"CGMVAE K{RANDOM_START}",
    f"CGMVAE K{DISPERSION_PER_CELL}",
    f"GMVAE {OWN_LATENT}",
    f"CGMVAE {OWN_LATENT}",
    "Leiden on PCA",
    "scVI + Leiden",
    f"AE{KMEANS}",
    f"beta-VAE{KMEANS}",
    f"beta-VSC{KMEANS}",
)


def _cached_clusters(dataset, method, adata, label_key, likelihood, seed, epochs):
    """The clusters of :func:`cluster`, kept in the benchmark cache (see ``_cache.py``)."""

    def run():
        clusters = cluster(method, adata, label_key, likelihood, seed, epochs)
        if clusters is None:
            return None
        return anndata.AnnData(obs=pd.DataFrame({"cluster": np.asarray(clusters).astype(str)}))

    key = _cache.digest(dataset, method, seed, epochs, SCGMVAE_SOURCE, scvi.__version__)
    stored = _cache.cached(key, run)
    return None if stored is None else stored.obs["cluster"].to_numpy()


SCGMVAE_SOURCE = _cache.source_digest(Path(scgmvae.__file__).parent)
"""The code this run imported (hashed at import), part of the key of the stored clusters."""


def _methods_option(methods: list[str]) -> str:
    """The --methods part of the table's command, empty when every method ran."""
    if list(methods) == list(METHODS):
        return ""
    return " --methods " + " ".join(shlex.quote(m) for m in methods)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny run that checks the code")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="*", default=["kang", "pbmc68k", "toy"])
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--section",
        help="name of the section of docs/benchmarks/clustering.md to write, for a run that "
        "should not replace the main table (such as a subset of the methods)",
    )
    args = parser.parse_args()
    setup_threads()
    if args.smoke:
        os.environ[_cache.CACHE_ENV] = "0"  # smoke runs check the code and keep nothing
    datasets, seeds, epochs = args.datasets, range(args.seeds), args.max_epochs
    if args.smoke:
        datasets, seeds, epochs = ["toy"], range(1), 2
    rows = []
    for dataset in datasets:
        adata, label_key, likelihood = load(dataset)
        labels = adata.obs[label_key].astype(str).to_numpy()
        for method in args.methods:
            for seed in seeds:
                clusters = _cached_clusters(
                    dataset, method, adata, label_key, likelihood, seed, epochs
                )
                if clusters is None:
                    continue
                scores = scgmvae.tl.clustering_scores(clusters, labels)
                rows.append({"dataset": dataset, "method": method, "seed": seed, **scores})
                print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    if args.smoke:
        print(frame.to_string())
        return
    table = frame.groupby(["dataset", "method"], sort=False)[list(METRICS)].agg(mean_sd)
    command = (
        f"python benchmarks/clustering.py --max-epochs {epochs} --seeds {len(seeds)} "
        f"--datasets {' '.join(datasets)}{_methods_option(args.methods)}"
    )
    title = "Unsupervised clustering"
    if args.section:
        command += f" --section {args.section}"
        title += f" ({', '.join(datasets)})"
    write_section(
        args.section or "clustering",
        title,
        command,
        table,
        "Kang: 832 cells, 6 cell types, raw counts on 2,000 HVGs (NB). pbmc68k_reduced: 700 "
        "cells, 10 bulk labels, scaled data (Gaussian likelihood; no scVI row: scVI needs counts "
        "and its training diverges on these values). toy_blobs: 2,000 cells, 5 "
        "classes x 2 conditions, counts. K: one component per label, one default train() "
        "(cluster initialisation: a broad component for 30% of the epochs, then clusters of z "
        "minus the condition shift, plain k-means or k-means into twice as many clusters "
        "merged by Ward's linkage, whichever has the higher silhouette, as pseudo-labels for "
        "10%, then unsupervised); "
        "'random start': train(cluster_init=False). 'condition as batch': the condition "
        "registered as the model's batch covariate (setup_anndata(batch_key='condition')). "
        "'Gaussian on log1p': the thesis' likelihood on log1p CP10k data of the count datasets. "
        "'dispersion per cell': dispersion='gene-cell' (the negative binomial's inverse "
        "dispersion decoded from z for each cell and gene; count datasets only). "
        "Leiden-guided on own z: Leiden clusters (resolution 1) of the z of a first model (K "
        "components, trained for the same epochs) as labels for half the epochs, then "
        "unsupervised, so this recipe trains twice as long. AE, beta-VAE (beta 2) and beta-VSC "
        "(spike-and-slab prior, beta 2): the models of the second seed report "
        "(benchmarks/_seed_models.py: log1p CP10k input, squared error, layers 128-32-16, 6 "
        "latent dimensions, the same epochs), with k-means (as many clusters as labels) on "
        "their latent means. homogeneity: every cluster holds one "
        "label; completeness: every label is in one cluster. "
        "accuracy_majority maps each cluster to its most frequent label, accuracy_hungarian "
        "one-to-one. Mean ± sd over seeds, then the value of each seed.",
    )


if __name__ == "__main__":
    main()
