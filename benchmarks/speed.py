"""Speed and memory of GMVAE / CGMVAE against scVI, on the same data with the same settings.

Every method runs in its own process (so peak RSS is its own) with the same batch size (128),
layer width (128), number of layers (1) and latent size (10): training time per epoch and
cells/s, ``get_latent_representation`` and ``predict`` (scANVI's, built on the trained scVI,
for scVI) time and cells/s, CGMVAE's ``predict_perturbation`` of every control cell to the
other condition, and the process's peak resident memory.

Three settings:

- ``--dataset kang``: the 832-cell Kang file on 2,000 HVGs, 50 epochs, 3 seeds.
- ``--dataset kang6``: the full-size Kang data (``kang_ifnb_6donors.h5ad`` from
  ``$SCGMVAE_DATA_DIR``, 12,103 cells) on 2,000 HVGs, 10 epochs, 3 seeds; the time of a
  ``train()`` at the default number of epochs follows from the time per epoch.
- ``--dataset synthetic``: 200,000 cells x 2,000 genes of sparse (CSR) counts written to an
  h5ad, 1 epoch; our models also train from the file opened with ``backed="r"``.

    python benchmarks/speed.py --dataset kang        # -> docs/benchmarks/speed.md, section speed
    python benchmarks/speed.py --dataset kang6       # -> section speed_kang6
    python benchmarks/speed.py --dataset synthetic   # -> docs/benchmarks/speed.md, section scale
    python benchmarks/speed.py --smoke               # tiny synthetic run (CI), writes nothing
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
from _common import kang, mean_sd, setup_threads, write_section
from scipy import sparse
from scvi.model._utils import get_max_epochs_heuristic

METHODS = ("scVI", "GMVAE", "CGMVAE")
BATCH_SIZE = 128
DEFAULT_EPOCHS = {"kang": 50, "kang6": 10, "synthetic": 1}
"""Epochs per setting: the time per epoch settles after a few, so the larger data run fewer."""
N_CLUSTERS = 10


def synthetic_counts(n_cells: int, n_genes: int, seed: int = 0) -> anndata.AnnData:
    """Sparse Poisson counts from ``N_CLUSTERS`` gene profiles and two conditions.

    About 10% of the entries are non-zero, as in 2,000 highly variable genes of 10x data; the
    matrix is built in chunks of 10,000 cells so that it is never dense as a whole.
    """
    rng = np.random.default_rng(seed)
    profiles = rng.gamma(0.3, 0.4, size=(N_CLUSTERS, n_genes))
    condition_effect = np.exp(rng.normal(0.0, 0.5, size=n_genes))
    clusters = rng.integers(N_CLUSTERS, size=n_cells)
    conditions = rng.integers(2, size=n_cells)
    chunks = []
    for start in range(0, n_cells, 10_000):
        stop = min(start + 10_000, n_cells)
        size_factor = rng.lognormal(0.0, 0.3, size=(stop - start, 1))
        rates = profiles[clusters[start:stop]] * size_factor
        rates = np.where(conditions[start:stop, None] == 1, rates * condition_effect, rates)
        chunks.append(sparse.csr_matrix(rng.poisson(rates).astype(np.float32)))
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical([f"type_{c}" for c in clusters]),
            "condition": pd.Categorical(np.where(conditions == 1, "stimulated", "control")),
        },
        index=[f"cell_{i}" for i in range(n_cells)],
    )
    var = pd.DataFrame(index=[f"gene_{j}" for j in range(n_genes)])
    return anndata.AnnData(X=sparse.vstack(chunks, format="csr"), obs=obs, var=var)


def _timed(fn) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def worker(method: str, path: str, max_epochs: int, backed: bool, seed: int) -> dict:
    """Train and run one method in this process; returns timings and peak RSS."""
    import scvi

    import scgmvae

    setup_threads()
    scvi.settings.seed = seed
    adata = anndata.read_h5ad(path, backed="r" if backed else None)
    n = adata.n_obs
    sizes = {"n_hidden": 128, "n_latent": 10, "n_layers": 1}
    if method == "scVI":
        scvi.model.SCVI.setup_anndata(adata, labels_key="cell_type")
        model = scvi.model.SCVI(adata, **sizes)
    else:
        model_cls = getattr(scgmvae.model, method)
        setup = {"condition_key": "condition"} if method == "CGMVAE" else {}
        model_cls.setup_anndata(adata, labels_key="cell_type", **setup)
        model = model_cls(adata, **sizes)
    _, train_seconds = _timed(
        lambda: model.train(
            max_epochs=max_epochs,
            batch_size=BATCH_SIZE,
            train_size=1.0,
            enable_progress_bar=False,
        )
    )
    latent, latent_seconds = _timed(lambda: model.get_latent_representation(batch_size=BATCH_SIZE))
    cluster_seconds = float("nan")
    if method != "scVI":
        # the clustering step of an unsupervised train() (k-means, the merged alternative and
        # their silhouettes), here on the trained latent space
        from scgmvae.train._cluster_init import ClusterInit, cluster_init_epochs

        init = ClusterInit(*cluster_init_epochs(get_max_epochs_heuristic(n)), seed=seed)
        _, cluster_seconds = _timed(lambda: init._clusters(latent, model.module.n_components))
    perturbation_seconds = float("nan")
    if method == "CGMVAE" and not backed:
        control = adata[adata.obs["condition"] == "control"].copy()
        _, perturbation_seconds = _timed(
            lambda: model.predict_perturbation(control, target_condition="stimulated")
        )
    if method == "scVI":
        model = scvi.model.SCANVI.from_scvi_model(model, unlabeled_category="Unknown")
    _, predict_seconds = _timed(lambda: model.predict(batch_size=BATCH_SIZE))
    return {
        "train s/epoch": train_seconds / max_epochs,
        "train cells/s": n * max_epochs / train_seconds,
        "latent s": latent_seconds,
        "cluster init s": cluster_seconds,
        "latent cells/s": n / latent_seconds,
        "predict s": predict_seconds,
        "predict cells/s": n / predict_seconds,
        "predict_perturbation s": perturbation_seconds,
        # ru_maxrss is in KiB on Linux
        "peak RSS (GB)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def run_in_subprocess(method: str, path: Path, max_epochs: int, backed: bool, seed: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--path",
        str(path),
        "--max-epochs",
        str(max_epochs),
        "--seed",
        str(seed),
    ]
    if backed:
        command.append("--backed")
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{run.stderr[-3000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=sorted(DEFAULT_EPOCHS), default="kang")
    parser.add_argument("--smoke", action="store_true", help="tiny run that checks the code")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--n-cells", type=int, default=200_000)
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--backed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.path, args.max_epochs, args.backed, args.seed)))
        return

    setup_threads()  # for the machine line of the table; each worker sets its own
    synthetic = args.dataset == "synthetic" or args.smoke
    epochs = args.max_epochs or DEFAULT_EPOCHS["synthetic" if synthetic else args.dataset]
    seeds = args.seeds or (1 if synthetic else 3)
    runs = [(m, False) for m in METHODS]
    if synthetic:
        # the smoke run checks the backed path once: both models read it the same way
        runs += [("GMVAE", True)] if args.smoke else [("GMVAE", True), ("CGMVAE", True)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.h5ad"
        if args.smoke:
            adata, epochs, seeds = synthetic_counts(2_000, 200), 1, 1
        elif synthetic:
            adata = synthetic_counts(args.n_cells, 2_000)
        else:
            adata = kang(full=args.dataset == "kang6")
        adata.obs["cell_type"] = adata.obs["cell_type"].cat.add_categories("Unknown")
        adata.write_h5ad(path)
        shape = adata.shape
        density = sparse.csr_matrix(adata.X).nnz / np.prod(shape)
        del adata
        rows = []
        for method, backed in runs:
            for seed in range(seeds):
                result = run_in_subprocess(method, path, epochs, backed, seed)
                result["method"] = f"{method} ({'backed' if backed else 'in memory'})"
                rows.append(result)
                print(result, flush=True)
    frame = pd.DataFrame(rows)
    if args.smoke:
        print(frame.to_string())
        return
    grouped = frame.groupby("method", sort=False)
    means = grouped.mean(numeric_only=True)
    table = grouped.agg(mean_sd) if seeds > 1 else means.map(lambda v: f"{v:.3f}")
    scvi_means = means.loc["scVI (in memory)"]
    ratios = {
        "train s/epoch": "train time vs scVI",
        "latent s": "latent time vs scVI",
        "predict s": "predict time vs scVI",
        "peak RSS (GB)": "peak RSS vs scVI",
    }
    for column, name in ratios.items():
        table[name] = (means[column] / scvi_means[column]).map("{:.2f}x".format)
    # an unsupervised train() at the default epochs, with the cluster initialisation (its
    # latent pass and clustering) against without it
    default_epochs = get_max_epochs_heuristic(shape[0])
    training = means["train s/epoch"] * default_epochs
    with_init = training + means["latent s"] + means["cluster init s"]
    table[f"unsupervised train() at {default_epochs} epochs vs no cluster init"] = (
        with_init / training
    ).map(lambda ratio: "" if np.isnan(ratio) else f"{ratio:.3f}x")
    table[f"train() at the default {default_epochs} epochs (min)"] = (
        means["train s/epoch"] * default_epochs / 60
    ).map("{:.1f}".format)
    if synthetic:
        name = "scale"
        title = f"Scale: {shape[0]:,} x {shape[1]:,} sparse counts ({density:.0%} non-zero)"
    elif args.dataset == "kang6":
        name = "speed_kang6"
        title = f"Speed and memory (Kang 6 donors, {shape[0]:,} cells x {shape[1]:,} HVGs)"
    else:
        name = "speed"
        title = f"Speed and memory (Kang {shape[0]} cells x {shape[1]} HVGs)"
    command = f"python benchmarks/speed.py --dataset {args.dataset}"
    if args.max_epochs:
        command += f" --max-epochs {epochs}"
    write_section(
        name,
        title,
        command,
        table.T,
        f"{epochs} epoch(s), batch size {BATCH_SIZE}, all cells in training (train_size=1), "
        "n_hidden 128, n_latent 10, 1 layer for every method; one process per method and "
        "seed, so the peak RSS (resident memory, including the data) is its own. predict: "
        "GMVAE/CGMVAE `predict()` against scANVI's `predict()` on the trained scVI. "
        "predict_perturbation s: CGMVAE's predict_perturbation of every control cell to the "
        "stimulated condition, with its defaults (in memory only). cluster "
        "init s: the clustering step of an unsupervised train() (k-means into K and into 2K "
        "clusters merged by Ward's linkage, and their silhouettes on at most 5,000 cells), "
        "timed on the trained latent space; with the latent pass it needs (about latent s) "
        "it is the whole extra cost of the cluster initialisation, which adds no epochs.",
    )


if __name__ == "__main__":
    main()
