"""Unusual but valid input gives the same results as the plain in-memory CSR input."""

from __future__ import annotations

import anndata
import numpy as np
import pytest
import scvi
from scipy import sparse

import scgmvae
from scgmvae.model import CGMVAE


@pytest.fixture(scope="module")
def trained():
    """A CGMVAE on toy counts (CSR) and its control cells, trained without a seed set."""
    scvi.settings.seed = None
    adata = scgmvae.datasets.toy_blobs(n_cells_per_group=20, counts=True, seed=3)
    adata.X = sparse.csr_matrix(adata.X)
    CGMVAE.setup_anndata(adata, condition_key="condition", labels_key="cell_type")
    model = CGMVAE(adata)
    model.train(max_epochs=2, enable_progress_bar=False)
    return model, adata[adata.obs["condition"] == "control"].copy()


def _outputs(model, cells, **kwargs) -> dict[str, np.ndarray]:
    """Latent, labels and predictions of every route, each route with the same seed."""
    outputs = {
        "latent": model.get_latent_representation(cells, **kwargs),
        "labels": np.asarray(model.predict(cells, **kwargs)),
    }
    for route in ("expression", "z"):
        scvi.settings.seed = 7
        predicted = model.predict_perturbation(
            cells, target_condition="stimulated", route=route, values="mean", **kwargs
        )
        outputs[route] = np.asarray(predicted.X)
    scvi.settings.seed = None
    return outputs


def _assert_same(outputs: dict, reference: dict) -> None:
    assert outputs.keys() == reference.keys()
    for key, value in outputs.items():
        if key == "labels":
            np.testing.assert_array_equal(value, reference[key])
        else:
            np.testing.assert_allclose(value, reference[key], atol=1e-5, err_msg=key)


def _csc(cells):
    cells.X = sparse.csc_matrix(cells.X)
    return cells


def _dense_float64(cells):
    cells.X = cells.X.toarray().astype(np.float64)
    return cells


def _duplicate_names(cells):
    cells.obs_names = ["cell"] * cells.n_obs
    return cells


@pytest.mark.parametrize("change", [_csc, _dense_float64, _duplicate_names])
def test_other_layouts_give_the_same_results(trained, change):
    model, control = trained
    reference = _outputs(model, control)
    _assert_same(_outputs(model, change(control.copy())), reference)


def test_backed_cells_give_the_same_results(trained, tmp_path):
    model, control = trained
    control.write_h5ad(tmp_path / "control.h5ad")
    backed = anndata.read_h5ad(tmp_path / "control.h5ad", backed="r")
    _assert_same(_outputs(model, backed), _outputs(model, control))
    assert backed.isbacked


def test_batch_larger_than_the_data(trained):
    model, control = trained
    reference = _outputs(model, control)
    _assert_same(_outputs(model, control, batch_size=100 * control.n_obs), reference)


def test_genes_in_another_order_fail_loudly(trained):
    model, control = trained
    reordered = control[:, control.var_names[::-1]].copy()
    with pytest.raises(ValueError, match=r"same genes in a different order.*adata\[:, model"):
        model.predict_perturbation(reordered, target_condition="stimulated")
    # the fix the message gives works and matches the original order
    fixed = reordered[:, model.adata.var_names].copy()
    _assert_same(_outputs(model, fixed), _outputs(model, control))


def test_new_cells_without_a_labels_column_are_unlabelled(trained):
    model, control = trained
    unlabelled = control.copy()
    unlabelled.obs["cell_type"] = "Unknown"  # the unlabelled category: each cell's own component
    without = control.copy()
    del without.obs["cell_type"]
    _assert_same(_outputs(model, without), _outputs(model, unlabelled))
    assert "cell_type" not in without.obs  # the user's obs is left alone
