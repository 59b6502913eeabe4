"""Where unsupervised clusters are decided: the cluster initialisation of one default train().

``train()`` on unlabelled cells pre-trains with one broad component, clusters the posterior
means of ``z`` by k-means, guides the components to those clusters, then trains freely
(``scgmvae.train.ClusterInit``). This script records the latent space at the clustering step
of GMVAE K (one component per label, the clustering benchmark's setting) and scores, against
the labels, the k-means clusters the model starts from, other clusterings of the same latent
space, and the final model's components. It shows whether a better clustering step would
change the result, or whether the pre-trained latent space limits it. A second model of the
same seed starts from the merged clusters (``ClusterInit(overcluster_factor=2)``: k-means
into twice as many clusters, their centres merged by Ward's linkage).

    python benchmarks/cluster_init.py --dataset pbmc68k --seeds 5   # -> docs/benchmarks.md
    python benchmarks/cluster_init.py --dataset kang --model CGMVAE --seeds 3
    python benchmarks/cluster_init.py --smoke                        # toy data, CI
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import scvi
from _common import mean_sd, setup_threads, write_section
from clustering import leiden_on, load
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.mixture import GaussianMixture

import scgmvae
from scgmvae.train._cluster_init import N_KMEANS_INIT, cluster_init_epochs

MANY_KMEANS_INIT = 100
N_GMM_INIT = 5
MERGE_FACTOR = 2
SMOKE_EPOCHS = 10


class RecordingClusterInit(scgmvae.train.ClusterInit):
    """A cluster initialisation that keeps the latent space it clusters."""

    latent: np.ndarray | None = None

    def _clusters(self, latent: np.ndarray, n_clusters: int):
        self.latent = latent.copy()
        return super()._clusters(latent, n_clusters)


def clusterings(latent: np.ndarray, n_clusters: int, seed: int) -> dict[str, np.ndarray]:
    """Clusterings of the pre-trained latent space, the model's own k-means first."""
    return {
        f"k-means, {N_KMEANS_INIT} restarts (the model's)": KMeans(
            n_clusters, n_init=N_KMEANS_INIT, random_state=seed
        ).fit_predict(latent),
        f"k-means, {MANY_KMEANS_INIT} restarts": KMeans(
            n_clusters, n_init=MANY_KMEANS_INIT, random_state=seed
        ).fit_predict(latent),
        "Gaussian mixture, diagonal": GaussianMixture(
            n_clusters, covariance_type="diag", n_init=N_GMM_INIT, random_state=seed
        ).fit_predict(latent),
        "Gaussian mixture, full": GaussianMixture(
            n_clusters, covariance_type="full", n_init=N_GMM_INIT, random_state=seed
        ).fit_predict(latent),
        f"k-means into {MERGE_FACTOR}x as many, merged by Ward": scgmvae.train.ClusterInit(
            1, 1, seed=seed, overcluster_factor=MERGE_FACTOR
        )._clusters(latent, n_clusters)[2],
        "Ward": AgglomerativeClustering(n_clusters, linkage="ward").fit_predict(latent),
        "Leiden (resolution 1)": leiden_on(latent, seed),
    }


def _trained(
    adata, model_name: str, n_labels: int, likelihood: str, seed: int, epochs: int, **init
):
    """A model trained with a recording cluster initialisation (``init``: its arguments)."""
    scvi.settings.seed = seed
    work = adata.copy()
    model_cls = getattr(scgmvae.model, model_name)
    model_cls.setup_anndata(
        work, **({"condition_key": "condition"} if model_name == "CGMVAE" else {})
    )
    model = model_cls(work, n_components=n_labels, gene_likelihood=likelihood)
    recorder = RecordingClusterInit(*cluster_init_epochs(epochs), seed=seed, **init)
    # the callback train() adds by default, passed by hand to keep a handle on it
    model.train(
        max_epochs=epochs, enable_progress_bar=False, cluster_init=False, callbacks=[recorder]
    )
    return model, recorder


def run_seed(
    adata, label_key: str, likelihood: str, seed: int, epochs: int, model_name: str = "GMVAE"
) -> list[dict]:
    labels = adata.obs[label_key].astype(str).to_numpy()
    n_labels = len(set(labels))
    model, recorder = _trained(adata, model_name, n_labels, likelihood, seed, epochs)
    train_labels = labels[np.asarray(model.train_indices)]
    rows = [
        {
            "clustering": name,
            "seed": seed,
            "ari": scgmvae.tl.clustering_scores(found, train_labels)["ari"],
        }
        for name, found in clusterings(recorder.latent, n_labels, seed).items()
    ]
    merged, _ = _trained(
        adata, model_name, n_labels, likelihood, seed, epochs, overcluster_factor=MERGE_FACTOR
    )
    for name, final in (
        ("final model (all cells)", model),
        ("final model, merged start (all cells)", merged),
    ):
        predicted = final.predict(return_components=True)
        rows.append(
            {
                "clustering": name,
                "seed": seed,
                "ari": scgmvae.tl.clustering_scores(predicted, labels)["ari"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="toy data, 1 seed, few epochs")
    parser.add_argument("--dataset", choices=["kang", "pbmc68k", "toy"], default="pbmc68k")
    parser.add_argument("--model", choices=["GMVAE", "CGMVAE"], default="GMVAE")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=100)
    args = parser.parse_args()
    setup_threads()
    dataset, seeds, epochs = args.dataset, range(args.seeds), args.max_epochs
    if args.smoke:
        dataset, seeds, epochs = "toy", range(1), SMOKE_EPOCHS
    adata, label_key, likelihood = load(dataset)
    model_name = args.model
    rows = [
        row
        for seed in seeds
        for row in run_seed(adata, label_key, likelihood, seed, epochs, model_name)
    ]
    by_clustering = pd.DataFrame(rows).groupby("clustering", sort=False)["ari"]
    table = by_clustering.agg(mean_sd).to_frame("ari")
    table["lowest seed"] = by_clustering.min()
    print(table.to_string())
    if args.smoke:
        return
    suffix = "" if model_name == "GMVAE" else f"_{model_name.lower()}"
    write_section(
        f"cluster_init_{dataset}{suffix}",
        f"Where the clusters are decided: cluster initialisation on {dataset} ({model_name})",
        f"python benchmarks/cluster_init.py --dataset {dataset} --model {model_name} "
        f"--seeds {len(seeds)} --max-epochs {epochs}",
        table.round(3),
        f"{model_name} with one component per label ({label_key}), one default train() of "
        f"{epochs} epochs. The clustering rows cluster the posterior means of z that the "
        "cluster initialisation clusters after its pre-training (training cells only) and "
        "score them against the labels (ARI); the model's own k-means is the first row. "
        "'final model': the trained model's components on every cell; 'merged start': a "
        "second model of the same seed whose cluster initialisation clusters by k-means into "
        f"{MERGE_FACTOR}x as many clusters and merges their centres by Ward's linkage "
        f"(ClusterInit(overcluster_factor={MERGE_FACTOR})). Mean ± sd over seeds, then each "
        "seed; 'lowest seed' is the worst seed.",
    )


if __name__ == "__main__":
    main()
