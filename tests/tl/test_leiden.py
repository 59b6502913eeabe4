from __future__ import annotations

import numpy as np
import pytest
import scvi
import torch

import scgmvae
from scgmvae.model import CGMVAE, GMVAE


@pytest.fixture
def toy_dense():
    return scgmvae.datasets.toy_blobs(n_cells_per_group=50, seed=1)


@pytest.mark.slow  # numba compiles scanpy's neighbour graph on first use
def test_leiden_clusters_leave_the_data_alone(toy_dense):
    before = toy_dense.copy()
    clusters = scgmvae.tl.leiden_clusters(toy_dense, resolution=0.3)
    assert clusters.index.equals(toy_dense.obs_names)
    np.testing.assert_array_equal(toy_dense.X, before.X)
    assert list(toy_dense.obs.columns) == list(before.obs.columns)
    assert "X_pca" not in toy_dense.obsm
    scores = scgmvae.tl.clustering_scores(clusters, toy_dense.obs["cell_type"].astype(str))
    assert scores["ari"] > 0.9, scores  # well-separated toy classes


@pytest.mark.slow  # numba compiles scanpy's neighbour graph on first use
@pytest.mark.usefixtures("one_torch_thread")
def test_leiden_clusters_keep_torch_thread_count(toy_dense):
    # scanpy's neighbour search resets torch to one thread per core
    scgmvae.tl.leiden_clusters(toy_dense, resolution=0.3)
    assert torch.get_num_threads() == 1


@pytest.mark.slow  # numba compiles scanpy's neighbour graph on first use
def test_leiden_clusters_on_an_embedding(toy_dense):
    # an embedding that separates the conditions, not the cell types the expression shows
    rng = np.random.default_rng(0)
    condition = toy_dense.obs["condition"].cat.codes.to_numpy()
    toy_dense.obsm["X_test"] = 10.0 * np.eye(2)[condition] + rng.normal(size=(toy_dense.n_obs, 2))
    clusters = scgmvae.tl.leiden_clusters(toy_dense, resolution=0.3, use_rep="X_test")
    assert clusters.index.equals(toy_dense.obs_names)
    # every cluster holds one condition and mixes the cell types
    by_condition = scgmvae.tl.clustering_scores(clusters, condition.astype(str))
    by_type = scgmvae.tl.clustering_scores(clusters, toy_dense.obs["cell_type"].astype(str))
    assert by_condition["accuracy_majority"] > 0.99, by_condition
    assert by_type["accuracy_majority"] < 0.6, by_type
    with pytest.raises(KeyError, match="X_scgmvae_z"):
        scgmvae.tl.leiden_clusters(toy_dense, use_rep="X_scgmvae_z")


@pytest.mark.slow
def test_leiden_guided_training(toy_dense):
    toy_dense.obs["leiden"] = scgmvae.tl.leiden_clusters(toy_dense, resolution=0.3)
    GMVAE.setup_anndata(toy_dense, labels_key="leiden")
    model = GMVAE(toy_dense, gene_likelihood="normal")
    assert model.module.n_components == toy_dense.obs["leiden"].nunique()
    scgmvae.tl.leiden_guided_train(
        model, supervised_epochs=20, unsupervised_epochs=5, enable_progress_bar=False
    )
    history = model.history["classification_train"].to_numpy().ravel().astype(float)
    assert len(history) == 25
    assert np.all(history[:20] > 0) and np.all(history[20:] == 0)  # phase 2 ignored labels
    predicted = model.predict()
    agreement = np.mean(predicted == toy_dense.obs["leiden"].astype(str).to_numpy())
    assert agreement > 0.9


def test_leiden_guided_needs_labels(toy_counts):
    GMVAE.setup_anndata(toy_counts)
    with pytest.raises(ValueError, match="no registered labels"):
        scgmvae.tl.leiden_guided_train(GMVAE(toy_counts, n_components=3))


@pytest.mark.slow
def test_two_stage_leiden_guided_clustering_of_kang(kang_hvg):
    # measured with seeds 0-2 at these epochs: ARI 0.545, 0.554, 0.527; Leiden on PCA 0.465
    adata = kang_hvg.copy()
    labels = adata.obs["cell_type"].astype(str)
    scvi.settings.seed = 0
    CGMVAE.setup_anndata(adata, condition_key="condition")
    first = CGMVAE(adata, n_components=labels.nunique())
    first.train(max_epochs=50, enable_progress_bar=False)
    scgmvae.tl.embed(first, adata)
    adata.obs["leiden_z"] = scgmvae.tl.leiden_clusters(adata, use_rep="X_scgmvae_z")
    CGMVAE.setup_anndata(adata, condition_key="condition", labels_key="leiden_z")
    model = scgmvae.tl.leiden_guided_train(CGMVAE(adata), 25, 25, enable_progress_bar=False)

    on_pca = scgmvae.tl.clustering_scores(scgmvae.tl.leiden_clusters(kang_hvg), labels)["ari"]
    two_stage = scgmvae.tl.clustering_scores(model.predict(), labels)["ari"]
    assert two_stage >= on_pca + 0.04, (two_stage, on_pca)
