"""Every public method of the models works on a tiny trained model, or is not there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scvi
import torch

import scgmvae
from scgmvae.model import CGMVAE, GMVAE


@pytest.fixture(scope="module", params=[0, None], ids=["seed 0", "no seed"])
def tiny(request, tmp_path_factory):
    """A CGMVAE on toy counts with labels, two donors and a continuous covariate, trained with
    ``scvi.settings.seed`` at the parameter (users often set none), and that seed."""
    scvi.settings.seed = request.param
    adata = scgmvae.datasets.toy_blobs(n_cells_per_group=12, counts=True, seed=8)
    adata.obs["donor"] = np.where(np.arange(adata.n_obs) % 2 == 0, "d1", "d2")
    adata.obs["depth"] = np.log(adata.X.sum(1))
    CGMVAE.setup_anndata(
        adata,
        condition_key="condition",
        labels_key="cell_type",
        batch_key="donor",
        continuous_covariate_keys=["depth"],
    )
    model = CGMVAE(adata)
    model.train(max_epochs=2, enable_progress_bar=False)
    return adata, model, tmp_path_factory.mktemp("saved"), request.param


def _calls(adata, model, folder) -> dict:
    """One call per public name, each returning something checked by the test."""
    control = adata[adata.obs["condition"] == "control"].copy()
    n, n_genes = adata.n_obs, adata.n_vars
    saved = folder / "model"

    def save_and_load():
        model.save(saved, overwrite=True)
        loaded = CGMVAE.load(saved, adata=adata)
        return np.allclose(loaded.get_latent_representation(), model.get_latent_representation())

    def deregister():
        other = control.copy()
        CGMVAE.setup_anndata(other, condition_key="condition", batch_key="donor")
        model.deregister_manager(other)
        with pytest.raises(ValueError, match="setup_anndata first"):
            model.deregister_manager(other)
        return True

    def query():
        new = adata.copy()
        new.obs["donor"] = "d3"
        return CGMVAE.load_query_data(new, model).batch_names == ["d1", "d2", "d3"]

    return {
        "adata": lambda: model.adata is adata,
        "adata_manager": lambda: model.adata_manager.adata is adata,
        "batch_names": lambda: model.batch_names == ["d1", "d2"],
        "condition_names": lambda: model.condition_names == ["control", "stimulated"],
        "label_names": lambda: len(model.label_names) == 5,
        "convert_legacy_save": lambda: callable(model.convert_legacy_save),
        "data_registry": lambda: model.data_registry("X").shape == adata.shape,
        "deregister_manager": lambda: deregister(),
        "device": lambda: str(model.device) == "cpu",
        "differential_abundance": lambda: (
            model.differential_abundance(adata, sample_key="donor") is None
            and adata.obsm["da_log_probs"].shape == (n, 2)
        ),
        "differential_expression": lambda: (
            len(model.differential_expression(groupby="cell_type", group1="class_0")) == n_genes
        ),
        "generate": lambda: model.generate(n_samples=2).n_obs == 2 * 5 * 2,
        "get_aggregated_posterior": lambda: isinstance(
            model.get_aggregated_posterior(), torch.distributions.Distribution
        ),
        "get_anndata_manager": lambda: model.get_anndata_manager(adata).adata is adata,
        "get_component_probabilities": lambda: np.allclose(
            model.get_component_probabilities().sum(1), 1, atol=1e-5
        ),
        "get_elbo": lambda: np.isfinite(float(model.get_elbo())),
        "get_from_registry": lambda: model.get_from_registry(adata, "batch").shape == (n, 1),
        "get_latent_representation": lambda: model.get_latent_representation().shape == (n, 10),
        "get_marginal_ll": lambda: np.isfinite(model.get_marginal_ll(n_mc_samples=3)),
        "get_normalized_expression": lambda: (
            model.get_normalized_expression().shape == (n, n_genes)
        ),
        "get_normalized_function_name": lambda: isinstance(
            model.get_normalized_function_name, str
        ),
        "get_reconstruction_error": lambda: (
            "reconstruction_loss" in model.get_reconstruction_error()
        ),
        "get_setup_arg": lambda: model.get_setup_arg("batch_key") is not None,
        "get_state_registry": lambda: "categorical_mapping" in model.get_state_registry("batch"),
        "get_var_names": lambda: list(model.get_var_names()) is not None,
        "history": lambda: "elbo_train" in model.history,
        "is_trained": lambda: model.is_trained,
        "load": lambda: save_and_load(),
        "load_query_data": lambda: query(),
        "load_registry": lambda: (
            model.save(saved, overwrite=True) or "setup_args" in CGMVAE.load_registry(saved)
        ),
        "posterior_predictive_sample": lambda: (
            model.posterior_predictive_sample().shape == (n, n_genes)
        ),
        "predict": lambda: set(model.predict()) <= set(model.label_names),
        "predict_perturbation": lambda: (
            model.predict_perturbation(control, target_condition="stimulated").n_obs
            == control.n_obs
        ),
        "prepare_query_anndata": lambda: CGMVAE.prepare_query_anndata(
            control, model, return_reference_var_names=True
        ).equals(adata.var_names),
        "register_manager": lambda: CGMVAE.register_manager(model.adata_manager) is None,
        "registry": lambda: "field_registries" in model.registry,
        "run_id": lambda: model.run_id is None or isinstance(model.run_id, str),
        "run_name": lambda: model.run_name is None or isinstance(model.run_name, str),
        "save": lambda: model.save(saved, overwrite=True) is None and saved.exists(),
        "setup_anndata": lambda: CGMVAE.setup_anndata(control.copy()) is None,
        "summary_string": lambda: "CGMVAE" in model.summary_string,
        "test_indices": lambda: len(model.test_indices) == 0,
        "to_device": lambda: model.to_device("cpu") is None,
        "train": lambda: model.train(max_epochs=1, enable_progress_bar=False) is None,
        "train_indices": lambda: len(model.train_indices) > 0,
        "transfer_fields": lambda: model.transfer_fields(control.copy()) is not None,
        "update_setup_method_args": lambda: (
            model.update_setup_method_args({"note": 1}) is None
            and model.get_setup_arg("note") == 1
        ),
        "validation_indices": lambda: len(model.validation_indices) >= 0,
        "view_anndata_setup": lambda: model.view_anndata_setup() is None,
        "view_registry": lambda: model.view_registry() is None,
        "view_setup_args": lambda: CGMVAE.view_setup_args(saved) is None,
        "view_setup_method_args": lambda: model.view_setup_method_args() is None,
    }


def _public(cls) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_") and hasattr(cls, name)}


def test_every_public_method_works(tiny):
    adata, model, folder, seed = tiny
    scvi.settings.seed = seed  # the suite's autouse fixture set 0 for every test
    calls = _calls(adata, model, folder)
    assert _public(CGMVAE) == set(calls), "a public name has no call in this test"
    failed = {}
    for name, call in calls.items():
        try:
            ok = call()
        except Exception as error:  # collect every failure, not only the first
            failed[name] = f"{type(error).__name__}: {error}"
            continue
        if not ok:
            failed[name] = "returned an unexpected result"
    assert not failed, "\n".join(f"{name}: {why}" for name, why in failed.items())


def test_gmvae_has_the_same_methods_but_perturbation():
    assert _public(GMVAE) == _public(CGMVAE) - {"predict_perturbation"}


def test_unsupported_methods_are_not_there():
    for name in ("prepare_query_mudata", "setup_annbatch"):
        assert not hasattr(CGMVAE, name)
        with pytest.raises(AttributeError, match="not supported"):
            getattr(GMVAE, name)


def test_differential_abundance_per_donor(tiny):
    adata, model, _, _ = tiny
    model.differential_abundance(adata, sample_key="donor")
    table = adata.obsm["da_log_probs"]
    assert isinstance(table, pd.DataFrame) and list(table.columns) == ["d1", "d2"]
    assert np.all(np.isfinite(table.to_numpy()))
