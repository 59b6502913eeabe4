"""Shared pieces of the benchmarks: data, baselines and the results pages in docs/."""

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
DOCS = ROOT / "docs"
RESULTS = DOCS / "benchmarks"
"""The folder of the results pages, one per task (:data:`SECTION_PAGES`); their overview is
docs/benchmarks.md."""
STATIC = DOCS / "_static"
"""The folder of the pages' figures."""
TITLE_WIDTH = 110
"""Characters per line of a figure's title, the width of two panels side by side."""
DEFAULT_DISPERSION = "gene"


def dispersion_suffix(dispersion: str) -> str:
    """What a run with another dispersion than the default adds to its section's name."""
    return "" if dispersion == DEFAULT_DISPERSION else "_" + dispersion.replace("-", "_")


SECTION_PAGES = {
    "perturbation": "perturbation",
    "de": "perturbation",
    "generation": "perturbation",
    "clustering": "clustering",
    "cluster_init": "clustering",
    "semi_supervised": "clustering",
    "integration": "integration",
    "label_transfer": "integration",
    "speed": "speed",
    "scale": "speed",
    "optimizer": "speed",
}
"""The results page (``docs/benchmarks/<page>.md``) of each section, by the start of its name: a
section belongs to a prefix that is its name or begins it followed by ``_``."""


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
    """Mean ± sd over seeds, then the value of each seed in order; empty for a method without
    the score (all values missing)."""
    values = np.asarray(values, dtype=float)
    if np.isnan(values).all():
        return ""
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    per_seed = ", ".join(f"{v:{per_seed_format}}" for v in values)
    return f"{values.mean():.3f} ± {sd:.3f} ({per_seed})"


def section_page(name: str) -> Path:
    """The results page that holds section ``name`` (:data:`SECTION_PAGES`).

    Raises
    ------
    ValueError
        If no prefix of :data:`SECTION_PAGES` matches ``name``; the message names the pages and
        their prefixes.
    """
    for prefix, page in SECTION_PAGES.items():
        if name == prefix or name.startswith(f"{prefix}_"):
            return RESULTS / f"{page}.md"
    pages = {
        page: [prefix for prefix, of in SECTION_PAGES.items() if of == page]
        for page in dict.fromkeys(SECTION_PAGES.values())
    }
    listing = "; ".join(
        f"{(RESULTS / f'{page}.md').relative_to(ROOT)}: {', '.join(prefixes)}"
        for page, prefixes in pages.items()
    )
    raise ValueError(
        f"Section {name!r} belongs to no results page. A section's name must start with the "
        f"prefix of its page ({listing}); add a prefix to SECTION_PAGES in "
        "benchmarks/_common.py for a new kind of section."
    )


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block between ``<!-- name:start -->`` and ``<!-- name:end -->``
    replaced by ``body`` (which carries both markers), or with ``body`` appended."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in text:
        return re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: body, text, flags=re.S)
    return text.rstrip() + "\n\n" + body + "\n"


def write_section(
    name: str, title: str, command: str, table: pd.DataFrame, notes: str = "", lead: str = ""
) -> None:
    """Replace the section ``name`` of its results page (:func:`section_page`) with a fresh
    table, or append it; ``lead`` (e.g. a figure) comes right below the title. Then redraw
    the page's headline figure and table if they summarise this section (``_figures.py``)."""
    import _figures  # here, so that only runs that write a page import matplotlib

    page = section_page(name)
    lead = f"{lead.strip()}\n\n" if lead else ""
    body = (
        f"<!-- {name}:start -->\n## {title}\n\n{lead}```bash\n{command}\n```\n\n"
        f"Machine: {machine()}.\n\n{table.to_markdown()}\n\n{notes}\n<!-- {name}:end -->"
    )
    text = page.read_text() if page.exists() else f"# {page.stem.capitalize()}\n"
    page.write_text(replace_block(text, name, body))
    _figures.refresh(name)


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
