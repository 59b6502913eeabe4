from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from torch import nn

import scgmvae
from scgmvae.model import CGMVAE, GMVAE
from scgmvae.train import GMVAEDataSplitter


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


def test_labelled_share_repeats_labelled_cells(toy_semi):
    CGMVAE.setup_anndata(toy_semi, condition_key="condition", labels_key="semi")
    model = CGMVAE(toy_semi)
    splitter = GMVAEDataSplitter(model.adata_manager, labelled_share=0.5, train_size=1.0)
    splitter.setup()
    indices = splitter.train_dataloader().indices
    labelled = toy_semi.obs["semi"].to_numpy() != "Unknown"  # every fourth cell
    counts = np.bincount(indices, minlength=toy_semi.n_obs)
    assert np.all(counts[~labelled] == 1)  # unlabelled cells once per epoch
    assert np.all(counts[labelled] == 3)  # 125 labelled x 3 >= 375 unlabelled
    assert labelled[indices].mean() >= 0.5
    plain = GMVAEDataSplitter(model.adata_manager, train_size=1.0)
    plain.setup()
    assert len(plain.train_dataloader().indices) == toy_semi.n_obs

    model.train(max_epochs=1, labelled_share=0.5, train_size=1.0, batch_size=100)
    assert model.trainer.num_training_batches == 8  # 750 cells, not 500


def test_labelled_share_auto_rebalances_scarce_labels(toy_counts):
    labels = toy_counts.obs["cell_type"].astype(str).to_numpy().copy()
    labels[np.arange(toy_counts.n_obs) % 100 != 0] = "Unknown"  # 1%: 5 of 500 cells
    toy_counts.obs["scarce"] = labels
    CGMVAE.setup_anndata(toy_counts, condition_key="condition", labels_key="scarce")
    model = CGMVAE(toy_counts, n_components=5)
    splitter = GMVAEDataSplitter(model.adata_manager, train_size=1.0, batch_size=128)
    splitter.setup()
    counts = np.bincount(splitter.train_dataloader().indices, minlength=toy_counts.n_obs)
    labelled = labels != "Unknown"
    # 1.3 labelled cells per minibatch on average: repeated to a quarter of the epoch
    assert np.all(counts[labelled] == 33) and np.all(counts[~labelled] == 1)
    # with minibatches of 1,000 cells there are enough labels: every cell once
    large = GMVAEDataSplitter(model.adata_manager, train_size=1.0, batch_size=1000)
    large.setup()
    assert len(large.train_dataloader().indices) == toy_counts.n_obs
    none = GMVAEDataSplitter(model.adata_manager, labelled_share=None, train_size=1.0)
    none.setup()
    assert len(none.train_dataloader().indices) == toy_counts.n_obs


def test_labelled_share_needs_labels_and_a_share(toy_counts, toy_semi):
    GMVAE.setup_anndata(toy_counts)
    model = GMVAE(toy_counts)
    model.train(max_epochs=1)  # "auto" without labels: plain sampling
    with pytest.raises(ValueError, match="labelled_share=0.2 needs labelled cells"):
        GMVAEDataSplitter(model.adata_manager, labelled_share=0.2)  # before any training
    with pytest.raises(ValueError, match="labelled_share=0.2 needs labelled cells"):
        model.train(max_epochs=1, labelled_share=0.2)
    CGMVAE.setup_anndata(toy_semi, condition_key="condition", labels_key="semi")
    with pytest.raises(ValueError, match=r"labelled_share must be in \(0, 1\)"):
        CGMVAE(toy_semi).train(max_epochs=1, labelled_share=1.5)


def test_mixed_minibatch_loss_uses_each_cells_kind(toy_semi):
    CGMVAE.setup_anndata(toy_semi, condition_key="condition", labels_key="semi")
    model = CGMVAE(toy_semi, n_components=5)
    module = model.module
    module.eval()
    loader = model._make_data_loader(toy_semi, indices=np.arange(8), batch_size=8)
    tensors = next(iter(loader))
    _, _, loss = module(tensors)
    labelled = tensors[scvi.REGISTRY_KEYS.LABELS_KEY].reshape(-1) < 5
    assert 0 < labelled.sum() < 8  # a mixed minibatch
    # the classification term is non-zero for labelled cells only
    inference = module.inference(**module._get_inference_input(tensors))
    generative = module.generative(**module._get_generative_input(tensors, inference))
    unlabelled_only = dict(tensors)
    unlabelled_only[scvi.REGISTRY_KEYS.LABELS_KEY] = tensors[scvi.REGISTRY_KEYS.LABELS_KEY] * 0 + 5
    out_unlabelled = module.loss(unlabelled_only, inference, generative)
    out_mixed = module.loss(tensors, inference, generative)
    assert out_unlabelled.extra_metrics["classification"] == 0
    assert out_mixed.extra_metrics["classification"] > 0
    # unlabelled cells keep their loss whatever the other cells are
    kl_mixed = out_mixed.kl_local["kl_z"][~labelled]
    kl_unlabelled = out_unlabelled.kl_local["kl_z"][~labelled]
    assert np.allclose(kl_mixed.detach().numpy(), kl_unlabelled.detach().numpy())
    assert np.isfinite(loss.loss.item())


@pytest.mark.parametrize("condition_effect", ["shift", "network"])
def test_save_load_gives_identical_latents(toy_counts, max_epochs, tmp_path, condition_effect):
    CGMVAE.setup_anndata(toy_counts, condition_key="condition")
    model = CGMVAE(
        toy_counts, n_components=5, w_prior="learned", condition_effect=condition_effect
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


def test_tl_embed_enables_scanpy_umap(toy_counts, max_epochs):
    import scanpy as sc

    CGMVAE.setup_anndata(toy_counts, condition_key="condition", labels_key="cell_type")
    model = CGMVAE(toy_counts)
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    scgmvae.tl.embed(model)
    assert toy_counts.obsm["X_scgmvae_z"].shape == (toy_counts.n_obs, 10)
    assert toy_counts.obsm["X_scgmvae_w"].shape == (toy_counts.n_obs, 10)
    assert isinstance(toy_counts.obs["scgmvae_component"].dtype, pd.CategoricalDtype)
    assert set(toy_counts.obs["scgmvae_prediction"].cat.categories) == set(model.label_names)
    sc.pp.neighbors(toy_counts, use_rep="X_scgmvae_z")
    sc.tl.umap(toy_counts)
    assert toy_counts.obsm["X_umap"].shape == (toy_counts.n_obs, 2)


def test_kang_semi_supervised_accuracy(kang_semi_model):
    """10% labelled Kang cells; accuracy on the other 90% beats scANVI's 0.79 on this split."""
    adata, model, labelled = kang_semi_model
    truth = adata.obs["cell_type"].astype(str).to_numpy()
    accuracy = np.mean(model.predict()[~labelled] == truth[~labelled])
    assert accuracy > KANG_ACCURACY_FLOOR, accuracy


# measured 0.957 and 0.960 with seeds 0 and 1 (100 epochs, 2,000 HVGs); scANVI: 0.79
KANG_ACCURACY_FLOOR = 0.90


def test_clustering_scores_and_mapping():
    components = np.array([0, 0, 1, 1, 2, 2, 3])
    labels = np.array(["a", "a", "b", "b", "b", "b", "a"])
    majority = scgmvae.tl.map_components(components, labels)
    assert majority == {0: "a", 1: "b", 2: "b", 3: "a"}
    hungarian = scgmvae.tl.map_components(components, labels, method="hungarian")
    assert sorted(v for v in hungarian.values() if v is not None) == ["a", "b"]
    scores = scgmvae.tl.clustering_scores(components, labels)
    assert scores["accuracy_majority"] == 1.0
    assert scores["accuracy_hungarian"] == pytest.approx(4 / 7)
    assert scores["n_clusters"] == 4
    with pytest.raises(ValueError, match="differ in length"):
        scgmvae.tl.map_components(components, labels[:3])


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


def test_condition_shift_moves_every_component_alike(toy_counts, max_epochs):
    CGMVAE.setup_anndata(toy_counts, condition_key="condition")
    model = CGMVAE(toy_counts, n_components=5)
    model.train(max_epochs=max_epochs, enable_progress_bar=False)
    module = model.module.eval()
    n = 7
    control, stimulated = torch.zeros(n, 1), torch.ones(n, 1)
    with torch.no_grad():
        w = torch.randn(n, module.n_latent_w)
        move = (
            module.mixture_components(w, stimulated)[0] - module.mixture_components(w, control)[0]
        )
        z, library = torch.randn(n, module.n_latent), torch.full((n, 1), 5.0)
        expression = [module.decode(z, library, c)[1] for c in (control, stimulated)]
    # one learned vector, the same for every cell and component, and a condition-free decoder
    torch.testing.assert_close(move, move[:1, :1].expand_as(move))
    assert move.abs().max() > 1e-3
    torch.testing.assert_close(*expression)
