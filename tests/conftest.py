from __future__ import annotations

import numpy as np
import pytest
import scvi
import torch
from threadpoolctl import threadpool_limits

import scgmvae

# Two OpenMP threads on small CI machines run many times slower than one; and the suite runs in
# one worker per core, so threads of BLAS and OpenMP (scikit-learn's k-means) beyond one per
# worker only wait for each other.
torch.set_num_threads(1)
threadpool_limits(1)

N_HVG = 2000
# fixtures that train models to accuracy or load the Kang data: their tests are slow
SLOW_FIXTURES = {
    "toy_epochs",
    "toy_model",
    "kang_hvg",
    "kang_semi_model",
    "held_out_model",
    "donors_model",
    "semi_toy_model",
}


def pytest_collection_modifyitems(items):
    """Mark the tests that train to accuracy as slow, so that -m "not slow" skips them."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed():
    scvi.settings.seed = 0


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test, whatever earlier tests left; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def max_epochs() -> int:
    """Epochs for the quick tests (training runs only to check mechanics)."""
    return 3


@pytest.fixture(scope="session")
def toy_epochs() -> int:
    """Epochs for the accuracy tests on toy_blobs."""
    return 60


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
def kang_hvg():
    """The embedded 832-cell Kang subset on its 2,000 most variable genes."""
    import scanpy as sc

    adata = scgmvae.datasets.kang_subset()
    sc.pp.highly_variable_genes(adata, n_top_genes=N_HVG, flavor="seurat_v3", subset=True)
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


@pytest.fixture(scope="session")
def toy_model():
    """A supervised CGMVAE on toy counts, shared by the perturbation and generation tests."""
    scvi.settings.seed = 0
    adata = scgmvae.datasets.toy_blobs(n_cells_per_group=60, counts=True, seed=4)
    scgmvae.model.CGMVAE.setup_anndata(adata, condition_key="condition", labels_key="cell_type")
    model = scgmvae.model.CGMVAE(adata)
    model.train(max_epochs=60, enable_progress_bar=False)
    return adata, model
