from __future__ import annotations

import numpy as np
import pytest

import scgmvae
from scgmvae.model import GMVAE


@pytest.fixture
def toy_dense():
    return scgmvae.datasets.toy_blobs(n_cells_per_group=50, seed=1)


def test_leiden_clusters_leave_the_data_alone(toy_dense):
    before = toy_dense.copy()
    clusters = scgmvae.tl.leiden_clusters(toy_dense, resolution=0.3)
    assert clusters.index.equals(toy_dense.obs_names)
    np.testing.assert_array_equal(toy_dense.X, before.X)
    assert list(toy_dense.obs.columns) == list(before.obs.columns)
    assert "X_pca" not in toy_dense.obsm
    scores = scgmvae.tl.clustering_scores(clusters, toy_dense.obs["cell_type"].astype(str))
    assert scores["ari"] > 0.9, scores  # well-separated toy classes


def test_leiden_guided_training(toy_dense):
    toy_dense.obs["leiden"] = scgmvae.tl.leiden_clusters(toy_dense, resolution=0.3)
    GMVAE.setup_anndata(toy_dense, labels_key="leiden")
    model = GMVAE(toy_dense, gene_likelihood="normal")
    assert model.module.n_components == toy_dense.obs["leiden"].nunique()
    scgmvae.tl.leiden_guided_train(
        model, supervised_epochs=20, unsupervised_epochs=5, enable_progress_bar=False
    )
    assert model.module.use_labels  # restored after the unsupervised phase
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
