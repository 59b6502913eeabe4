from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scvi
import torch

import scgmvae

KANG_FILE = "kang_ifnb_832.h5ad"

# Two OpenMP threads on small CI machines run many times slower than one.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    scvi.settings.seed = 0


@pytest.fixture(scope="session")
def max_epochs() -> int:
    """Epochs for the quick tests (training runs only to check mechanics)."""
    return 3


@pytest.fixture(scope="session")
def toy_epochs() -> int:
    """Epochs for the accuracy tests on toy_blobs."""
    return 60


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder: $SCGMVAE_DATA_DIR, else ../shared/data beside the repository."""
    path = Path(
        os.environ.get("SCGMVAE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data")
    ).resolve()  # absolute: subprocesses and notebooks run in other folders
    if not (path / KANG_FILE).exists():
        pytest.fail(
            f"{KANG_FILE} not found in {path}; set SCGMVAE_DATA_DIR to the folder holding it."
        )
    return path


@pytest.fixture
def toy_counts():
    """Small toy data with integer counts (500 cells, 5 classes, 2 conditions)."""
    return scgmvae.datasets.toy_blobs(n_cells_per_group=50, counts=True, seed=1)


@pytest.fixture
def toy_semi(toy_counts):
    """toy counts with every fourth cell labelled and the rest 'Unknown'."""
    adata = toy_counts
    labels = adata.obs["cell_type"].astype(str).to_numpy().copy()
    labels[np.arange(adata.n_obs) % 4 != 0] = "Unknown"
    adata.obs["semi"] = labels
    return adata


@pytest.fixture(scope="session")
def kang_hvg(data_dir):
    """The 832-cell Kang file on its 2,000 most variable genes."""
    import scanpy as sc

    adata = scgmvae.datasets.kang_subset(data_dir)
    sc.pp.highly_variable_genes(adata, n_top_genes=2000, flavor="seurat_v3", subset=True)
    return adata


@pytest.fixture(scope="session")
def kang_semi_model(kang_hvg):
    """CGMVAE trained on Kang with 10% of the cells labelled (the rest 'Unknown')."""
    scvi.settings.seed = 0
    adata = kang_hvg.copy()
    labelled = np.random.default_rng(0).random(adata.n_obs) < 0.1
    adata.obs["semi"] = np.where(labelled, adata.obs["cell_type"].astype(str), "Unknown")
    scgmvae.model.CGMVAE.setup_anndata(adata, condition_key="condition", labels_key="semi")
    model = scgmvae.model.CGMVAE(adata)
    model.train(max_epochs=100, enable_progress_bar=False)
    return adata, model, labelled
