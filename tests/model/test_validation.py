"""Bad input fails loudly, names the problem and the fix, and leaves the user's data alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import scgmvae
from scgmvae.model import CGMVAE, GMVAE


@pytest.fixture
def toy():
    return scgmvae.datasets.toy_blobs(n_cells_per_group=20, counts=True, seed=2)


@pytest.fixture
def trained(toy):
    CGMVAE.setup_anndata(toy, condition_key="condition", labels_key="cell_type")
    model = CGMVAE(toy)
    model.train(max_epochs=1, enable_progress_bar=False)
    return model


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("as_sparse", [False, True])
def test_nan_or_inf_rejected_at_setup(toy, bad, as_sparse):
    toy.X[3, 2] = bad
    if as_sparse:
        toy.X = sparse.csr_matrix(toy.X)
    with pytest.raises(ValueError, match="NaN or infinite.*impute"):
        GMVAE.setup_anndata(toy)


def test_negative_values_rejected_for_counts(toy):
    toy.X[0, 0] = -1.0
    GMVAE.setup_anndata(toy)
    with pytest.raises(ValueError, match="negative values.*gene_likelihood='normal'"):
        GMVAE(toy)
    GMVAE(toy, gene_likelihood="normal")  # scaled data is fine with a Gaussian


def test_normalised_data_rejected_for_counts(toy):
    toy.layers["counts"] = toy.X.copy()
    toy.X = np.log1p(toy.X / toy.X.sum(1, keepdims=True) * 1e4)  # log-normalised, as scanpy
    GMVAE.setup_anndata(toy)
    message = r"non-integer values.*layer='counts'.*gene_likelihood='normal'"
    with pytest.raises(ValueError, match=message):
        GMVAE(toy)
    GMVAE(toy, gene_likelihood="normal")  # normalised data with a Gaussian
    GMVAE.setup_anndata(toy, layer="counts")
    GMVAE(toy)  # the raw counts in a layer


def test_bernoulli_needs_unit_interval(toy):
    GMVAE.setup_anndata(toy)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        GMVAE(toy, gene_likelihood="bernoulli")


def test_float16_rejected(toy):
    toy.X = toy.X.astype(np.float16)
    with pytest.raises(TypeError, match="float16.*astype"):
        GMVAE.setup_anndata(toy)


def test_unknown_layer(toy):
    with pytest.raises(KeyError, match="Layer 'counts' is not in adata.layers"):
        GMVAE.setup_anndata(toy, layer="counts")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels_key": "celltype"}, "Labels key 'celltype' is not a column"),
        ({"condition_key": "cond"}, "Condition key 'cond' is not a column"),
    ],
)
def test_unknown_obs_keys(toy, kwargs, message):
    kwargs = {"condition_key": "condition", **kwargs}
    with pytest.raises(KeyError, match=message):
        CGMVAE.setup_anndata(toy, **kwargs)


def test_cgmvae_needs_condition(toy):
    with pytest.raises(ValueError, match="use scgmvae.model.GMVAE"):
        CGMVAE.setup_anndata(toy, condition_key=None)


def test_empty_categories_rejected(toy):
    toy.obs["cell_type"] = toy.obs["cell_type"].cat.add_categories(["ghost"])
    with pytest.raises(ValueError, match=r"no cells: \['ghost'\].*remove_unused_categories"):
        GMVAE.setup_anndata(toy, labels_key="cell_type")


def test_empty_anndata_rejected(toy):
    with pytest.raises(ValueError, match="AnnData is empty"):
        GMVAE.setup_anndata(toy[:0].copy())


def test_labels_with_missing_values(toy):
    labels = toy.obs["cell_type"].astype(object)
    labels.iloc[:3] = np.nan
    toy.obs["with_nan"] = labels
    with pytest.raises(ValueError, match=r"'with_nan' has 3 missing values.*fillna\('Unknown'\)"):
        GMVAE.setup_anndata(toy, labels_key="with_nan")


def test_integer_label_codes(toy):
    toy.obs["codes"] = toy.obs["cell_type"].cat.codes.astype(int)
    with pytest.raises(TypeError, match=r"'codes' holds non-string codes.*astype\(str\)"):
        GMVAE.setup_anndata(toy, labels_key="codes")
    toy.obs["codes"] = toy.obs["codes"].astype(str)
    GMVAE.setup_anndata(toy, labels_key="codes")  # the suggested fix works


def test_batch_with_missing_values(toy):
    toy.obs["donor"] = np.where(np.arange(toy.n_obs) % 3 == 0, None, "d1")
    with pytest.raises(ValueError, match=r"Batch column 'donor' has \d+ missing values"):
        GMVAE.setup_anndata(toy, batch_key="donor")
    with pytest.raises(KeyError, match="Batch key 'sample' is not a column"):
        GMVAE.setup_anndata(toy, batch_key="sample")


def test_continuous_covariate_must_be_numeric(toy):
    toy.obs["pct"] = "high"
    with pytest.raises(TypeError, match="Continuous covariate 'pct' has dtype"):
        GMVAE.setup_anndata(toy, continuous_covariate_keys=["pct"])


def test_unseen_conditions_and_batches_point_to_query_mapping(toy):
    toy.obs["donor"] = np.where(np.arange(toy.n_obs) % 2 == 0, "d1", "d2")
    CGMVAE.setup_anndata(toy, condition_key="condition", batch_key="donor")
    model = CGMVAE(toy)
    model.train(max_epochs=1, enable_progress_bar=False)
    new = toy.copy()
    new.obs["donor"] = "d3"
    with pytest.raises(ValueError, match=r"Batch column 'donor'.*\['d3'\].*load_query_data"):
        model.predict(new)
    new = toy.copy()
    new.obs["condition"] = new.obs["condition"].astype(str).replace("stimulated", "treated")
    with pytest.raises(ValueError, match=r"Condition column 'condition'.*\['treated'\]"):
        model.get_latent_representation(new)


def test_too_few_components(toy):
    GMVAE.setup_anndata(toy, labels_key="cell_type")
    with pytest.raises(ValueError, match="n_components=3 is smaller than the number of labels"):
        GMVAE(toy, n_components=3)


def test_unknown_likelihood_and_prior(toy):
    GMVAE.setup_anndata(toy)
    with pytest.raises(ValueError, match="gene_likelihood='gauss' is not supported"):
        GMVAE(toy, gene_likelihood="gauss")
    with pytest.raises(ValueError, match="w_prior='flat' is not supported"):
        GMVAE(toy, w_prior="flat")
    CGMVAE.setup_anndata(toy, condition_key="condition")
    with pytest.raises(ValueError, match="condition_effect='additive' is not supported"):
        CGMVAE(toy, condition_effect="additive")


def test_different_genes_rejected(trained, toy):
    other = toy[:, ::-1].copy()
    with pytest.raises(ValueError, match="same genes in a different order"):
        trained.predict(other)
    fewer = toy[:, 1:].copy()
    with pytest.raises(ValueError, match="1 registered genes missing"):
        trained.get_latent_representation(fewer)


def test_nan_in_new_data_rejected(trained, toy):
    new = toy.copy()
    new.X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        trained.predict(new)


def test_bad_representation(trained):
    with pytest.raises(ValueError, match="representation must be 'z' or 'w'"):
        trained.get_latent_representation(representation="y")


def test_failed_setup_leaves_data_unchanged(toy):
    toy.X[0, 0] = np.nan
    before_obs = toy.obs.copy()
    with pytest.raises(ValueError):
        CGMVAE.setup_anndata(toy, condition_key="condition")
    pd.testing.assert_frame_equal(toy.obs, before_obs)
    assert np.isnan(toy.X[0, 0]) and not toy.uns.get("_scvi_manager_uuid")


def test_cgmvae_with_one_condition_warns_and_points_to_query_mapping_and_gmvae(toy):
    control = toy[toy.obs["condition"] == "control"].copy()
    CGMVAE.setup_anndata(control, condition_key="condition", labels_key="cell_type")
    with pytest.warns(UserWarning, match=r"'condition' has only \['control'\].*load_query_data"):
        model = CGMVAE(control)
    model.train(max_epochs=1, enable_progress_bar=False)
    with pytest.raises(ValueError, match=r"\['stimulated'\] were not registered"):
        model.predict_perturbation(control, target_condition="stimulated")


def test_load_from_a_missing_folder(tmp_path, toy):
    with pytest.raises(FileNotFoundError, match="folder does not exist"):
        CGMVAE.load(tmp_path / "never_saved", adata=toy)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="folder has no model.pt"):
        CGMVAE.load(tmp_path / "empty", adata=toy)


def test_load_onto_data_without_the_registered_columns(trained, toy, tmp_path):
    trained.save(tmp_path / "model")
    other = toy.copy()
    del other.obs["condition"]
    with pytest.raises(KeyError, match="Condition key 'condition' is not a column"):
        CGMVAE.load(tmp_path / "model", adata=other)
    loaded = CGMVAE.load(tmp_path / "model", adata=toy.copy())  # the saved model is intact
    np.testing.assert_allclose(
        loaded.get_latent_representation(), trained.get_latent_representation(), atol=1e-6
    )


def test_new_cells_without_the_registered_layer(toy):
    toy.layers["counts"] = toy.X.copy()
    CGMVAE.setup_anndata(toy, layer="counts", condition_key="condition")
    model = CGMVAE(toy)
    model.train(max_epochs=1, enable_progress_bar=False)
    new = toy.copy()
    del new.layers["counts"]
    with pytest.raises(KeyError, match=r"Layer 'counts' is not in adata.layers"):
        model.get_latent_representation(new)
