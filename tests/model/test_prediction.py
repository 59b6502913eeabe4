"""Latents, component probabilities and labels of new cells; scanpy integration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import scgmvae
from scgmvae.model import CGMVAE


def test_predict_on_new_anndata_with_registered_genes(toy_counts, max_epochs):
    train = toy_counts[toy_counts.obs["condition"] == "control"].copy()
    CGMVAE.setup_anndata(train, condition_key="condition")
    model = CGMVAE(train, n_components=5)
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    new = toy_counts[toy_counts.obs["condition"] == "control"][:20].copy()
    new.obs_names = [f"new_{i}" for i in range(new.n_obs)]
    soft = model.predict(new, soft=True)
    assert soft.index.equals(new.obs_names)
    assert model.get_latent_representation(new).shape == (20, model.module.n_latent)


def test_tl_embed_writes_what_scanpy_reads(toy_counts, max_epochs):
    CGMVAE.setup_anndata(toy_counts, condition_key="condition", labels_key="cell_type")
    model = CGMVAE(toy_counts)
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    scgmvae.tl.embed(model)
    assert toy_counts.obsm["X_scgmvae_z"].shape == (toy_counts.n_obs, 10)
    assert toy_counts.obsm["X_scgmvae_w"].shape == (toy_counts.n_obs, 10)
    assert isinstance(toy_counts.obs["scgmvae_component"].dtype, pd.CategoricalDtype)
    assert set(toy_counts.obs["scgmvae_prediction"].cat.categories) == set(model.label_names)
    return toy_counts


@pytest.mark.slow  # the neighbour graph and UMAP compile with numba on first use
def test_tl_embed_enables_scanpy_umap(toy_counts, max_epochs):
    import scanpy as sc

    adata = test_tl_embed_writes_what_scanpy_reads(toy_counts, max_epochs)
    sc.pp.neighbors(adata, use_rep="X_scgmvae_z")
    sc.tl.umap(adata)
    assert adata.obsm["X_umap"].shape == (adata.n_obs, 2)


@pytest.mark.slow
def test_kang_semi_supervised_accuracy(kang_semi_model):
    """10% labelled Kang cells; accuracy on the other 90% beats scANVI's 0.79 on this split."""
    adata, model, labelled = kang_semi_model
    truth = adata.obs["cell_type"].astype(str).to_numpy()
    accuracy = np.mean(model.predict()[~labelled] == truth[~labelled])
    assert accuracy > KANG_ACCURACY_FLOOR, accuracy


# measured 0.957 and 0.960 with seeds 0 and 1 (100 epochs, 2,000 HVGs); scANVI: 0.79
KANG_ACCURACY_FLOOR = 0.90


@pytest.mark.slow
def test_query_mapping_kang_by_condition(kang_hvg):
    """Thesis §9.2: a reference trained on control cells labels the stimulated cells."""
    reference = kang_hvg[kang_hvg.obs["condition"] == "control"].copy()
    query = kang_hvg[kang_hvg.obs["condition"] == "stimulated"].copy()
    truth = query.obs["cell_type"].astype(str).to_numpy()
    query.obs["cell_type"] = "Unknown"
    CGMVAE.setup_anndata(reference, condition_key="condition", labels_key="cell_type")
    model = CGMVAE(reference)
    model.train(max_epochs=100, enable_progress_bar=False)
    mapped = CGMVAE.load_query_data(query, model)
    assert mapped.condition_names == ["control", "stimulated"]
    mapped.train(max_epochs=30, enable_progress_bar=False, plan_kwargs={"weight_decay": 0.0})
    accuracy = np.mean(mapped.predict() == truth)
    assert accuracy > QUERY_ACCURACY_FLOOR, accuracy
    assert mapped.get_latent_representation().shape == (query.n_obs, 10)


# measured 0.84-0.91 (seed 0, 100 + 30 epochs, 2,000 HVGs; 0.84 when run after the other
# tests of this file, 0.907 with the thesis conditional networks)
QUERY_ACCURACY_FLOOR = 0.80


@pytest.fixture(scope="module")
def semi_toy_model():
    """A CGMVAE trained on toy counts with every fourth cell labelled."""
    import scvi

    scvi.settings.seed = 0
    adata = scgmvae.datasets.toy_blobs(n_cells_per_group=40, counts=True, seed=6)
    labels = adata.obs["cell_type"].astype(str).to_numpy().copy()
    labels[np.arange(adata.n_obs) % 4 != 0] = "Unknown"
    adata.obs["semi"] = labels
    CGMVAE.setup_anndata(adata, condition_key="condition", labels_key="semi")
    model = CGMVAE(adata)
    model.train(max_epochs=40, enable_progress_bar=False)
    return adata, model


def test_new_cells_need_no_labels_column(semi_toy_model):
    adata, model = semi_toy_model
    truth = adata.obs["cell_type"].astype(str).to_numpy()
    new = adata.copy()
    del new.obs["semi"]
    before = new.obs.copy()
    predicted = model.predict(new)
    assert np.mean(predicted == truth) >= 0.9
    np.testing.assert_allclose(
        model.get_latent_representation(new), model.get_latent_representation(adata), rtol=1e-5
    )
    assert model.get_component_probabilities(new).shape == (new.n_obs, 5)
    scgmvae.tl.embed(model, new)
    assert (new.obs["scgmvae_prediction"].astype(str).to_numpy() == predicted).all()
    # the user's obs keeps its columns: no labels column is added
    assert "semi" not in new.obs and set(before.columns) <= set(new.obs.columns)
    control = new[new.obs["condition"] == "control"].copy()
    flipped = model.predict_perturbation(control, target_condition="stimulated")
    assert flipped.n_obs == control.n_obs


def test_unseen_labels_are_treated_as_unlabelled(semi_toy_model):
    adata, model = semi_toy_model
    new = adata.copy()
    new.obs["semi"] = np.where(np.arange(new.n_obs) % 2 == 0, "NK", "class_0")
    predicted = model.predict(new)
    truth = adata.obs["cell_type"].astype(str).to_numpy()
    assert np.mean(predicted == truth) >= 0.9
    # the user's column is left as it was
    assert set(new.obs["semi"]) == {"NK", "class_0"}
