"""Shared pieces of the benchmarks: data, baselines and the results table in docs/."""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import torch

import scgmvae

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks.md"


def setup_threads() -> None:
    """One thread (or ``$SCGMVAE_THREADS``) for torch and for numpy's BLAS: two OpenMP
    threads on the small benchmark machines run slower than one, and a multi-threaded
    OpenBLAS on a shared machine runs an SVD up to 10x slower than a single thread."""
    from threadpoolctl import threadpool_limits

    threads = int(os.environ.get("SCGMVAE_THREADS", "1"))
    torch.set_num_threads(threads)
    threadpool_limits(threads, user_api="blas")


DATA_DIR_ENV = "SCGMVAE_DATA_DIR"
KANG_6DONORS_FILE = "kang_ifnb_6donors.h5ad"
"""The full-size Kang IFN-beta data (Seurat's ``ifnb`` cells of six donors, 12,103 cells), read
from ``$SCGMVAE_DATA_DIR`` and never copied into the repository."""


def kang_6donors_path() -> Path:
    """``$SCGMVAE_DATA_DIR/kang_ifnb_6donors.h5ad``; exits naming the variable and the file."""
    directory = os.environ.get(DATA_DIR_ENV)
    if not directory:
        sys.exit(
            f"{KANG_6DONORS_FILE} not found: {DATA_DIR_ENV} is not set. Set {DATA_DIR_ENV} to "
            f"the folder that holds {KANG_6DONORS_FILE} (the full-size Kang data, 12,103 cells; "
            "see the data README)."
        )
    path = Path(directory) / KANG_6DONORS_FILE
    if not path.is_file():
        sys.exit(
            f"{KANG_6DONORS_FILE} not found: looked for {path.resolve()} (from ${DATA_DIR_ENV}). "
            f"Set {DATA_DIR_ENV} to the folder that holds {KANG_6DONORS_FILE}."
        )
    return path


def kang(n_top_genes: int | None = 2000, full: bool = False):
    """Kang PBMCs, restricted to highly variable genes (seurat_v3 on counts) unless
    ``n_top_genes`` is None.

    The 832-cell file of ``scgmvae.datasets.kang_subset()`` by default; with ``full`` the
    full-size 6-donor file (:data:`KANG_6DONORS_FILE`, 12,103 cells, 13 types) from
    ``$SCGMVAE_DATA_DIR`` (:func:`kang_6donors_path`). Raw counts in ``.X``,
    ``obs["condition"]`` (control / stimulated) and ``obs["cell_type"]``.
    """
    if full:
        adata = scgmvae.datasets.kang_subset(kang_6donors_path())
    else:
        adata = scgmvae.datasets.kang_subset()
    if n_top_genes:
        sc.pp.highly_variable_genes(
            adata, n_top_genes=n_top_genes, flavor="seurat_v3", subset=True
        )
    return adata


def machine() -> str:
    """One line describing the machine, for the table headers."""
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.system()} {cpu}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} on {torch.get_num_threads()} thread(s), Python "
        f"{sys.version.split()[0]}"
    )


def mean_sd(values, per_seed_format: str = ".3f") -> str:
    """Mean ± sd over seeds, then the value of each seed in order."""
    values = np.asarray(values, dtype=float)
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    per_seed = ", ".join(f"{v:{per_seed_format}}" for v in values)
    return f"{values.mean():.3f} ± {sd:.3f} ({per_seed})"


def write_section(
    name: str, title: str, command: str, table: pd.DataFrame, notes: str = "", lead: str = ""
) -> None:
    """Replace the section ``name`` of docs/benchmarks.md with a fresh table; ``lead`` (e.g. a
    figure) comes right below the title."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    lead = f"{lead.strip()}\n\n" if lead else ""
    body = (
        f"{start}\n## {title}\n\n{lead}```bash\n{command}\n```\n\nMachine: {machine()}.\n\n"
        f"{table.to_markdown()}\n\n{notes}\n{end}"
    )
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: body, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    RESULTS.write_text(text)


def scvi_latent_arithmetic(
    train, control, condition_key: str, ctrl: str, stim: str, max_epochs: int, seed: int
):
    """scGen-style baseline on scVI: shift control latents by the mean stim - ctrl difference.

    scVI is trained without a batch key, so the condition lives in its latent space (as in
    scGen); the shift is the difference of the condition means of the training latents, and the
    shifted latents are decoded at each control cell's library size.

    Returns
    -------
    AnnData of predicted cells in log1p(CP10k) space.
    """
    import anndata
    import scvi

    scvi.settings.seed = seed
    train = train.copy()
    scvi.model.SCVI.setup_anndata(train)
    model = scvi.model.SCVI(train, gene_likelihood="nb")
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    latent = model.get_latent_representation()
    conditions = train.obs[condition_key].to_numpy()
    delta = latent[conditions == stim].mean(0) - latent[conditions == ctrl].mean(0)
    control = control.copy()
    z = torch.tensor(model.get_latent_representation(control) + delta, dtype=torch.float32)
    counts = control.X.toarray() if hasattr(control.X, "toarray") else np.asarray(control.X)
    library = torch.log(torch.tensor(counts.sum(1, keepdims=True), dtype=torch.float32))
    with torch.inference_mode():
        out = model.module.generative(z, library, torch.zeros(len(z), 1, dtype=torch.long))
    scale = out["px"].scale.numpy()
    return anndata.AnnData(
        X=np.log1p(scale * 1e4).astype(np.float32), obs=control.obs.copy(), var=control.var.copy()
    )
