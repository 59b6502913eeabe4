from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from torch import nn

import scgmvae
from scgmvae.model import CGMVAE, GMVAE


def _train_toy(model_cls, epochs, **model_kwargs):
    adata = scgmvae.datasets.toy_blobs(n_cells_per_group=100, counts=True, seed=0)
    if model_cls is CGMVAE:
        model_cls.setup_anndata(adata, condition_key="condition")
    else:
        model_cls.setup_anndata(adata)
    model = model_cls(adata, n_components=5, **model_kwargs)
    model.train(max_epochs=epochs, batch_size=128, enable_progress_bar=False)
    return adata, model


@pytest.mark.parametrize("model_cls", [GMVAE, CGMVAE])
def test_unsupervised_toy_accuracy(model_cls, toy_epochs):
    adata, model = _train_toy(model_cls, toy_epochs)
    components = model.predict()
    assert components.dtype.kind == "i"
    scores = scgmvae.tl.clustering_scores(components, adata.obs["cell_type"].astype(str))
    assert scores["accuracy_hungarian"] >= 0.95, scores


def test_history_logs_each_loss_term(toy_counts, max_epochs):
    CGMVAE.setup_anndata(toy_counts, condition_key="condition")
    model = CGMVAE(toy_counts, n_components=5)
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    for term in ("reconstruction", "kl_z", "kl_w", "kl_y", "kl_d", "classification"):
        values = model.history[f"{term}_train"].to_numpy(dtype=float)
        assert len(values) == max_epochs and np.all(np.isfinite(values)), term
    assert "kl_weight" in model.history


@pytest.mark.parametrize("gene_likelihood", ["nb", "zinb", "poisson", "normal", "bernoulli"])
@pytest.mark.parametrize("w_prior", ["fixed", "learned"])
def test_likelihoods_and_priors_train_without_nan(
    gene_likelihood, w_prior, toy_counts, max_epochs
):
    adata = toy_counts
    if gene_likelihood == "normal":
        adata.layers["data"] = np.log1p(adata.X)
    elif gene_likelihood == "bernoulli":
        adata.layers["data"] = adata.X / adata.X.max()
    layer = None if gene_likelihood in ("nb", "zinb", "poisson") else "data"
    CGMVAE.setup_anndata(adata, layer=layer, condition_key="condition")
    model = CGMVAE(
        adata,
        n_components=6,
        n_latent=4,
        n_latent_w=3,
        gene_likelihood=gene_likelihood,
        w_prior=w_prior,
    )
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    assert np.all(np.isfinite(model.history["train_loss"].to_numpy(dtype=float)))
    z = model.get_latent_representation()
    w = model.get_latent_representation(representation="w")
    assert z.shape == (adata.n_obs, 4) and w.shape == (adata.n_obs, 3)
    assert np.all(np.isfinite(z)) and np.all(np.isfinite(w))
    soft = model.predict(soft=True)
    assert soft.shape == (adata.n_obs, 6)
    np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-5)


def test_semi_supervised_predicts_label_names(toy_semi, toy_epochs):
    CGMVAE.setup_anndata(toy_semi, condition_key="condition", labels_key="semi")
    model = CGMVAE(toy_semi, n_components=7)  # over-clustered: 2 free components
    assert model.module.n_labels == 5 and model.module.n_components == 7
    model.train(max_epochs=toy_epochs // 2, enable_progress_bar=False)
    predicted = model.predict()
    truth = toy_semi.obs["cell_type"].astype(str).to_numpy()
    assert set(predicted) <= set(truth)
    unlabelled = toy_semi.obs["semi"].to_numpy() == "Unknown"
    assert np.mean(predicted[unlabelled] == truth[unlabelled]) >= 0.95

    soft = model.predict(soft=True)
    assert list(soft.columns) == model.label_names
    assert soft.index.equals(toy_semi.obs_names)
    np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-5)
    components = model.predict(return_components=True)
    assert components.max() < 7


@pytest.mark.parametrize(
    ("condition_effect", "dispersion"), [("shift", "gene"), ("network", "gene-cell")]
)
def test_save_load_gives_identical_latents(
    toy_counts, max_epochs, tmp_path, condition_effect, dispersion
):
    CGMVAE.setup_anndata(toy_counts, condition_key="condition")
    model = CGMVAE(
        toy_counts,
        n_components=5,
        w_prior="learned",
        condition_effect=condition_effect,
        dispersion=dispersion,
    )
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    model.save(tmp_path / "model", overwrite=True)
    loaded = CGMVAE.load(tmp_path / "model", adata=toy_counts)
    for rep in ("z", "w"):
        np.testing.assert_array_equal(
            model.get_latent_representation(representation=rep),
            loaded.get_latent_representation(representation=rep),
        )
    np.testing.assert_array_equal(model.predict(), loaded.predict())
    assert loaded.module.w_prior == "learned"
    assert loaded.module.condition_effect == condition_effect
    assert f"condition_effect: {condition_effect}" in loaded._model_summary_string
    assert loaded.module.dispersion == dispersion
    for name, value in model.module.state_dict().items():
        torch.testing.assert_close(loaded.module.state_dict()[name], value)


def test_same_seed_same_latents(max_epochs):
    latents = []
    for _ in range(2):
        scvi.settings.seed = 7
        adata = scgmvae.datasets.toy_blobs(n_cells_per_group=30, counts=True, seed=3)
        GMVAE.setup_anndata(adata)
        model = GMVAE(adata, n_components=5)
        model.train(max_epochs=max_epochs, enable_progress_bar=False)
        latents.append(model.get_latent_representation())
    np.testing.assert_array_equal(latents[0], latents[1])


def test_repr_and_summary(toy_counts):
    GMVAE.setup_anndata(toy_counts, labels_key="cell_type")
    model = GMVAE(toy_counts)
    text = model.summary_string
    assert "GMVAE" in text and "5 components" in text and "nb" in text
    assert "Not Trained" in text
    assert model.label_names == [f"class_{i}" for i in range(5)]


def test_supervised_labels_all_known(toy_counts, max_epochs):
    GMVAE.setup_anndata(toy_counts, labels_key="cell_type")
    model = GMVAE(toy_counts)
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    assert model.module.n_components == 5
    assert model.history["classification_train"].iloc[-1, 0] > 0


def test_anndata_not_modified_beyond_registration(toy_counts, max_epochs):
    before_x = toy_counts.X.copy()
    before_obs = toy_counts.obs.copy()
    CGMVAE.setup_anndata(toy_counts, condition_key="condition")
    model = CGMVAE(toy_counts, n_components=5)
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    model.predict()
    np.testing.assert_array_equal(toy_counts.X, before_x)
    pd.testing.assert_frame_equal(toy_counts.obs[before_obs.columns], before_obs)
    added = set(toy_counts.obs.columns) - set(before_obs.columns)
    assert all(col.startswith("_scvi") for col in added), added


def test_continued_training_runs_in_train_mode(toy_counts):
    GMVAE.setup_anndata(toy_counts)
    model = GMVAE(toy_counts, n_components=5)
    model.train(max_epochs=1, enable_progress_bar=False)
    batch_norm = next(m for m in model.module.encoder.modules() if isinstance(m, nn.BatchNorm1d))
    before = batch_norm.running_mean.clone()
    model.train(max_epochs=1, enable_progress_bar=False)
    # running statistics only move in train mode
    assert not torch.equal(before, batch_norm.running_mean)
    assert len(model.history["train_loss"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("gene_likelihood", ["nb", "zinb", "poisson"])
def test_training_is_stable_on_messy_counts(gene_likelihood):
    """Cells scaled x1000, all-zero genes and all-zero cells: finite loss and latents."""
    adata = scgmvae.datasets.toy_blobs(n_cells_per_group=30, counts=True, seed=5)
    adata.X[:3] *= 1000
    adata.X[:, :2] = 0
    adata.X[10:13] = 0
    CGMVAE.setup_anndata(adata, condition_key="condition")
    model = CGMVAE(adata, n_components=5, gene_likelihood=gene_likelihood)
    model.train(max_epochs=20, enable_progress_bar=False)
    assert np.all(np.isfinite(model.history["train_loss"].to_numpy(dtype=float)))
    for representation in ("z", "w"):
        assert np.all(np.isfinite(model.get_latent_representation(representation=representation)))
    assert np.all(np.isfinite(model.predict(soft=True).to_numpy()))


@pytest.mark.slow
def test_early_stopping_and_validation_metrics(toy_counts):
    GMVAE.setup_anndata(toy_counts)
    model = GMVAE(toy_counts, n_components=5)
    model.train(
        max_epochs=50,
        early_stopping=True,
        early_stopping_patience=2,
        early_stopping_min_delta=1e9,  # no epoch improves enough: stops after the patience
        enable_progress_bar=False,
    )
    assert len(model.history["elbo_validation"]) < 50
    assert "kl_z_validation" in model.history
