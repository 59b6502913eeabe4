"""Demo: train a (C)GMVAE on a dataset that needs no download, print its metrics, write an h5ad.

Run ``python -m scgmvae --help`` for the options.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("scgmvae")


def _load(dataset: str, seed: int):
    import scanpy as sc

    from scgmvae.datasets import toy_blobs

    if dataset == "toy":
        # counts, so the default negative-binomial likelihood applies
        adata = toy_blobs(counts=True, seed=seed)
        return adata, "cell_type", "condition", "nb", 5
    # scanpy's bundled PBMCs: log-normalised, scaled values in .X -> Gaussian likelihood
    adata = sc.datasets.pbmc68k_reduced()
    return adata, "bulk_labels", None, "normal", adata.obs["bulk_labels"].nunique()


def main(argv: list[str] | None = None) -> int:
    """Train, report clustering metrics and save the AnnData with the latents."""
    parser = argparse.ArgumentParser(prog="python -m scgmvae", description=__doc__)
    parser.add_argument("--dataset", choices=["toy", "pbmc68k"], default="toy")
    parser.add_argument("--output", type=Path, default=Path("scgmvae_demo.h5ad"))
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads; on small machines two OpenMP threads run slower than one",
    )
    parser.add_argument(
        "--labelled-fraction",
        type=float,
        default=0.0,
        help="fraction of cells whose label is shown to the model (0: unsupervised)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import scvi
    import torch

    import scgmvae

    torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    adata, labels_key, condition_key, likelihood, n_labels = _load(args.dataset, args.seed)
    truth = adata.obs[labels_key].astype(str).to_numpy()
    # the conditional model where the data has conditions
    model_cls = scgmvae.model.GMVAE if condition_key is None else scgmvae.model.CGMVAE
    setup_kwargs = {} if condition_key is None else {"condition_key": condition_key}
    if args.labelled_fraction > 0:
        shown = np.random.default_rng(args.seed).random(adata.n_obs) < args.labelled_fraction
        adata.obs["scgmvae_labels"] = np.where(shown, truth, "Unknown")
        setup_kwargs["labels_key"] = "scgmvae_labels"
    model_cls.setup_anndata(adata, **setup_kwargs)
    model = model_cls(adata, n_components=n_labels, gene_likelihood=likelihood)
    print(model.summary_string)

    start = time.perf_counter()
    model.train(max_epochs=args.max_epochs, enable_progress_bar=False)
    seconds = time.perf_counter() - start

    scgmvae.tl.embed(model, adata)
    scores = scgmvae.tl.clustering_scores(adata.obs["scgmvae_component"], truth)
    print(
        f"\n{args.dataset}: {adata.n_obs} cells x {adata.n_vars} genes, trained in {seconds:.1f} s"
    )
    for name, value in scores.items():
        print(f"  {name:<20} {value:.3f}" if isinstance(value, float) else f"  {name:<20} {value}")
    if args.labelled_fraction > 0:
        hidden = adata.obs["scgmvae_labels"].to_numpy() == "Unknown"
        accuracy = np.mean(adata.obs["scgmvae_prediction"].to_numpy()[hidden] == truth[hidden])
        print(f"  {'accuracy_unlabelled':<20} {accuracy:.3f}")

    adata.obs = adata.obs.drop(columns=[c for c in adata.obs if c.startswith("_scvi")])
    adata.uns.pop("_scvi_uuid", None)
    adata.uns.pop("_scvi_manager_uuid", None)
    adata.uns["scgmvae_demo"] = {"dataset": args.dataset, **scores}
    adata.write_h5ad(args.output)
    print(f"\nWrote {args.output} (obsm: {sorted(adata.obsm)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
