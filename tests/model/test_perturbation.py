from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

import scgmvae
from scgmvae.model import CGMVAE
from scgmvae.model.base._quantiles import N_QUANTILES
from scgmvae.model.base._response_mixin import DEFAULT_RESPONSE_BANDWIDTH


@pytest.mark.parametrize("route", ["w", "z"])
def test_predict_perturbation_output_decoded(toy_model, route):
    adata, model = toy_model
    control = adata[adata.obs["condition"] == "control"].copy()
    predicted = model.predict_perturbation(control, target_condition="stimulated", route=route)
    assert predicted.shape == control.shape
    assert predicted.var_names.equals(control.var_names)
    assert predicted.obs_names.equals(control.obs_names)
    assert (predicted.obs["source_condition"] == "control").all()
    assert (predicted.obs["target_condition"] == "stimulated").all()
    assert list(control.obs.columns) == list(predicted.obs.columns[: control.obs.shape[1]])
    # log1p of counts normalised to 10,000 per cell
    np.testing.assert_allclose(np.expm1(predicted.X).sum(1), 1e4, rtol=1e-3)
    counts = predicted.layers["counts"]
    assert (counts >= 0).all() and np.allclose(counts, np.round(counts))


def test_averaged_draws_are_less_noisy(toy_model):
    adata, model = toy_model
    control = adata[adata.obs["condition"] == "control"].copy()

    def spread(n_samples):
        first, second = (
            model.predict_perturbation(
                control, target_condition="stimulated", route="z", n_samples=n_samples
            )
            for _ in range(2)
        )
        return np.abs(first.X - second.X).mean(), first

    single, one_draw = spread(1)
    averaged, many_draws = spread(20)
    assert averaged < 0.5 * single
    assert "counts" in one_draw.layers and "counts" not in many_draws.layers
    with pytest.raises(ValueError, match="n_samples must be at least 1"):
        model.predict_perturbation(control, target_condition="stimulated", n_samples=0)


@pytest.mark.parametrize("route", ["z", "w"])
def test_flipped_cells_move_towards_the_target(toy_model, route):
    adata, model = toy_model
    control = adata[adata.obs["condition"] == "control"].copy()
    stimulated = adata[adata.obs["condition"] == "stimulated"]
    predicted = model.predict_perturbation(
        control, target_condition="stimulated", route=route, n_samples=10
    )
    scores = scgmvae.tl.evaluate_perturbation(predicted, stimulated, control, n_degs=8)
    # measured 0.79 (z) and 0.93 (w): on blobs the component means are the truth
    assert scores.loc["prediction", "r2_lfc_top_degs"] > {"z": 0.65, "w": 0.8}[route]
    assert scores.loc["prediction", "r2_top_degs"] > scores.loc["control", "r2_top_degs"]
    assert scores.loc["control", "r2_lfc_top_degs"] == 0.0
    if route == "w":
        # Component means keep the expression level. Route z decodes each cell's own z, whose
        # leftover noise adds to that of the sampled counts and lowers log-means (documented).
        real_stim = scgmvae.tl.log_normalize(stimulated).X.mean(0)
        real_ctrl = scgmvae.tl.log_normalize(control).X.mean(0)
        error = np.abs(predicted.X.mean(0) - real_stim).mean()
        assert error < 0.5 * np.abs(real_ctrl - real_stim).mean()


def test_unregistered_target_condition(toy_model):
    adata, model = toy_model
    with pytest.raises(ValueError, match=r"\['treated'\] were not registered.*'stimulated'"):
        model.predict_perturbation(adata, target_condition="treated")
    with pytest.raises(ValueError, match="route must be one of"):
        model.predict_perturbation(adata, target_condition="stimulated", route="x")


def _log_normalised(adata):
    return np.asarray(scgmvae.tl.log_normalize(adata).X, dtype=np.float64)


def test_expression_route_moves_each_quantile(toy_model):
    """Cells of a type seen under both conditions take on that type's target distribution."""
    import scvi

    adata, model = toy_model
    control = adata[adata.obs["condition"] == "control"].copy()
    scvi.settings.seed = 0
    predicted = model.predict_perturbation(control, target_condition="stimulated")
    assert predicted.shape == control.shape and "counts" not in predicted.layers
    assert predicted.var_names.equals(control.var_names)
    assert (predicted.obs["target_condition"] == "stimulated").all()
    assert (predicted.X >= 0).all()
    x = _log_normalised(adata)
    stimulated = (adata.obs["condition"] == "stimulated").to_numpy()
    control_x = _log_normalised(control)
    for cell_type in np.unique(adata.obs["cell_type"]):
        real = x[(adata.obs["cell_type"] == cell_type).to_numpy() & stimulated]
        rows = (control.obs["cell_type"] == cell_type).to_numpy()
        # the control cells are the training cells of the type, so their quantile levels are
        # uniform and the moved cells follow the real stimulated distribution, gene by gene:
        # measured 2026-11-26, mean Wasserstein distance 0.03-0.05 against 0.41-0.67 for the
        # control cells; gene means within 0.02-0.04 with tied cells spread evenly over the
        # tie's levels, 0.01-0.12 with independent draws
        moved, before = (
            np.mean([wasserstein_distance(cells[:, g], real[:, g]) for g in range(x.shape[1])])
            for cells in (predicted.X[rows], control_x[rows])
        )
        assert moved < 0.15 * before, (cell_type, moved, before)
        np.testing.assert_allclose(predicted.X[rows].mean(0), real.mean(0), atol=0.06)
    scvi.settings.seed = 0
    again = model.predict_perturbation(control, target_condition="stimulated")
    np.testing.assert_array_equal(again.X, predicted.X)  # ties are broken with the seed
    # cells already under the target condition stay as they are
    stimulated_cells = adata[stimulated].copy()
    kept = model.predict_perturbation(stimulated_cells, target_condition="stimulated")
    np.testing.assert_allclose(kept.X, _log_normalised(stimulated_cells), atol=1e-5)


# Default route (expression), 100 epochs, 2,000 HVGs, seeds 0-2, measured 2026-11-26 on Python
# 3.11 / scvi-tools 1.4 (top-100-DEG R², LFC R²): CD14 Mono 0.727-0.743 / 0.664-0.684, CD4 Naive
# T 0.892-0.901 / 0.863-0.876, B 0.832-0.856 / 0.773-0.803; the floors sit 0.05 below the lowest
# (measured with independent tie draws and bandwidth 0.25, before the current defaults, which
# score higher on the benchmark)
KANG_PERTURBATION_FLOORS = {
    "CD14 Mono": (0.68, 0.61),
    "CD4 Naive T": (0.84, 0.81),
    "B": (0.78, 0.72),
}


@pytest.mark.slow
@pytest.mark.parametrize("cell_type", list(KANG_PERTURBATION_FLOORS))
def test_kang_perturbation_scgen_protocol(kang_hvg, cell_type):
    """Hold out one type's stimulated cells, predict them from its control cells."""
    import scvi

    adata = kang_hvg
    held_out = (adata.obs["cell_type"] == cell_type) & (adata.obs["condition"] == "stimulated")
    train = adata[~held_out].copy()
    control = adata[(adata.obs["cell_type"] == cell_type) & (adata.obs["condition"] == "control")]
    control = control.copy()
    stimulated = adata[held_out].copy()
    scvi.settings.seed = 0
    CGMVAE.setup_anndata(train, condition_key="condition", labels_key="cell_type")
    model = CGMVAE(train)
    model.train(max_epochs=100, enable_progress_bar=False)
    predicted = model.predict_perturbation(control, target_condition="stimulated")
    scores = scgmvae.tl.evaluate_perturbation(predicted, stimulated, control)
    ours, baseline = scores.loc["prediction"], scores.loc["control"]
    top_floor, lfc_floor = KANG_PERTURBATION_FLOORS[cell_type]
    assert ours["r2_top_degs"] >= max(top_floor, baseline["r2_top_degs"] + 0.1), scores
    assert ours["r2_lfc_top_degs"] >= lfc_floor, scores
    # all genes: above a copy of the control (measured 0.33-0.38 above)
    assert ours["r2_all"] >= baseline["r2_all"] + 0.1, scores
    # the predicted cells lie nearer the real stimulated cells than the control cells do
    assert ours["e_distance"] < baseline["e_distance"], scores


@pytest.fixture(scope="module")
def held_out_model():
    """A CGMVAE trained without the stimulated cells of class_0 (the scGen protocol)."""
    import scvi

    scvi.settings.seed = 0
    adata = scgmvae.datasets.toy_blobs(n_cells_per_group=60, counts=True, seed=4)
    held_out = (adata.obs["cell_type"] == "class_0") & (adata.obs["condition"] == "stimulated")
    train = adata[~held_out].copy()
    CGMVAE.setup_anndata(train, condition_key="condition", labels_key="cell_type")
    model = CGMVAE(train)
    model.train(max_epochs=60, enable_progress_bar=False)
    return adata, train, model


def test_component_responses_are_measured_on_training_cells(held_out_model):
    _, train, model = held_out_model
    control, stimulated = model._condition_codes(["control", "stimulated"])
    responses = model._component_responses(control, stimulated, 0.5, None).numpy()
    z = model.get_latent_representation(train)
    labels, conditions = train.obs["cell_type"], train.obs["condition"]

    def centre(label, condition):
        return z[((labels == label) & (conditions == condition)).to_numpy()].mean(0)

    measured = [f"class_{k}" for k in range(1, 5)]
    for label in measured:
        k = model.label_names.index(label)
        expected = centre(label, "stimulated") - centre(label, "control")
        np.testing.assert_allclose(responses[k], expected, rtol=1e-4, atol=1e-4)
    # class_0 was never seen stimulated: with a narrow kernel it borrows the response of the
    # class whose control cells lie nearest, with the default one a blend of all
    held_out = model.label_names.index("class_0")
    distances = [
        np.linalg.norm(centre(label, "control") - centre("class_0", "control"))
        for label in measured
    ]
    nearest = model.label_names.index(measured[int(np.argmin(distances))])
    narrow = model._component_responses(control, stimulated, 1e-6, None).numpy()
    np.testing.assert_allclose(narrow[held_out], responses[nearest], rtol=1e-4, atol=1e-4)
    others = responses[[model.label_names.index(label) for label in measured]]
    assert (responses[held_out] >= others.min(0) - 1e-5).all()
    assert (responses[held_out] <= others.max(0) + 1e-5).all()


@pytest.mark.parametrize("route", ["w", "z"])
def test_held_out_class_is_predicted(held_out_model, route):
    adata, _, model = held_out_model
    class_0 = adata.obs["cell_type"] == "class_0"
    control = adata[class_0 & (adata.obs["condition"] == "control")].copy()
    stimulated = adata[class_0 & (adata.obs["condition"] == "stimulated")].copy()
    predicted = model.predict_perturbation(
        control, target_condition="stimulated", route=route, n_samples=10
    )
    scores = scgmvae.tl.evaluate_perturbation(predicted, stimulated, control, n_degs=8)
    # LFC R² measured 2026-11-25, seeds 0-3 (route w / z): 0.77/0.43, 0.23/0.21, 0.81/0.28,
    # 0.43/0.18; the class-specific part of the toy shift is random, so it varies by seed
    assert scores.loc["prediction", "r2_lfc_top_degs"] > 0.1
    assert scores.loc["prediction", "r2_top_degs"] > scores.loc["control", "r2_top_degs"]


def test_held_out_class_borrows_expression_responses(held_out_model):
    """A class never seen stimulated takes the quantile responses of the classes near it."""
    adata, train, model = held_out_model
    control, stimulated = model._condition_codes(["control", "stimulated"])
    source, responses = (
        t.numpy() for t in model._expression_quantiles(control, stimulated, 0.25, None)
    )
    _, narrow = (t.numpy() for t in model._expression_quantiles(control, stimulated, 1e-6, None))
    latent = model._component_responses(control, stimulated, 0.25, None).numpy()
    narrow_latent = model._component_responses(control, stimulated, 1e-6, None).numpy()
    x = _log_normalised(train)
    labels, conditions = train.obs["cell_type"], train.obs["condition"]
    levels = (np.arange(responses.shape[1]) + 0.5) / responses.shape[1]
    measured = [f"class_{k}" for k in range(1, 5)]
    ids = [model.label_names.index(label) for label in measured]
    for label, k in zip(measured, ids, strict=True):
        of_type = (labels == label).to_numpy()
        before = np.quantile(x[of_type & (conditions == "control").to_numpy()], levels, axis=0)
        after = np.quantile(x[of_type & (conditions == "stimulated").to_numpy()], levels, axis=0)
        np.testing.assert_allclose(source[k], before, atol=1e-4)
        np.testing.assert_allclose(responses[k], after - before, atol=1e-4)
    held_out = model.label_names.index("class_0")
    # the same weights as the latent responses: the nearest class alone with a narrow kernel
    nearest = ids[int(np.argmin(np.abs(narrow_latent[ids] - narrow_latent[held_out]).sum(1)))]
    np.testing.assert_allclose(narrow[held_out], responses[nearest], atol=1e-5)
    weights = np.linalg.lstsq(latent[ids].T, latent[held_out], rcond=None)[0]
    np.testing.assert_allclose(
        responses[held_out], np.einsum("j,jqg->qg", weights, responses[ids]), atol=1e-3
    )
    assert weights.min() > -1e-3 and abs(weights.sum() - 1) < 1e-3

    class_0 = adata.obs["cell_type"] == "class_0"
    control_0 = adata[class_0 & (adata.obs["condition"] == "control")].copy()
    stimulated_0 = adata[class_0 & (adata.obs["condition"] == "stimulated")].copy()
    predicted = model.predict_perturbation(control_0, target_condition="stimulated")
    scores = scgmvae.tl.evaluate_perturbation(predicted, stimulated_0, control_0, n_degs=8)
    assert scores.loc["prediction", "r2_top_degs"] > scores.loc["control", "r2_top_degs"]
    assert scores.loc["prediction", "e_distance"] < scores.loc["control", "e_distance"]


def test_borrowed_responses_move_towards_the_decoded_response(held_out_model):
    """Only a component that borrows changes with ``decoded_response_weight``: at every
    quantile level its response moves that share of the way to its decoded response, which
    keeps the zeros of cells the decoded response leaves at zero."""
    import scvi

    _, train, model = held_out_model
    control = train[train.obs["condition"] == "control"].copy()
    codes = model._condition_codes(["control", "stimulated"])
    held_out = model.label_names.index("class_0")
    scvi.settings.seed = 0
    training = model._encode_cells(model.adata, None, expression=True)
    decoded = model._decoded_responses(training, *codes, DEFAULT_RESPONSE_BANDWIDTH, None)
    decoded = decoded.numpy()
    assert decoded.shape == (model.module.n_components, N_QUANTILES, control.n_vars)
    assert np.isnan(np.delete(decoded, held_out, 0)).all()  # the measured classes
    assert np.isfinite(decoded[held_out]).all()
    predicted = {}
    for weight in (0.0, 0.5, 1.0):
        scvi.settings.seed = 0  # the same tie order and the same decoded draws
        predicted[weight] = model.predict_perturbation(
            control, "stimulated", decoded_response_weight=weight
        ).X
    class_0 = (control.obs["cell_type"] == "class_0").to_numpy()
    np.testing.assert_array_equal(predicted[0.0][~class_0], predicted[1.0][~class_0])
    # where no prediction clips at 0 the responses, and so the moves, mix linearly
    unclipped = (np.stack([p[class_0] for p in predicted.values()]) > 0).all(0)
    assert unclipped.sum() >= 100
    halfway = (predicted[0.0] + predicted[1.0])[class_0] / 2
    np.testing.assert_allclose(predicted[0.5][class_0][unclipped], halfway[unclipped], atol=1e-5)
    # with the decoded response alone, the cells move by it on the mean, up to the noise of
    # the count draws (each call draws its own; on 16 genes one draw's log-normalised value
    # is 0 or about 6)
    counts = np.asarray(control.X[class_0])
    own = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    move = (predicted[1.0][class_0] - own).mean(0)
    genes = unclipped.all(0)
    assert genes.sum() >= 5
    np.testing.assert_allclose(move[genes], decoded[held_out].mean(0)[genes], atol=0.3)
    assert np.corrcoef(move[genes], decoded[held_out].mean(0)[genes])[0, 1] > 0.9
    # a cell at zero that the borrowed response leaves there stays there: the decoded
    # quantiles have zeros at the lowest levels too, where a shift of the mean would lift
    # every such cell alike
    assert (decoded[held_out][0] == 0).mean() > 0.5
    zeros = (own == 0) & (predicted[0.0][class_0] == 0)
    assert zeros.sum() >= 20
    assert (predicted[1.0][class_0][zeros] == 0).mean() > 0.9


def test_decoded_response_weight_outside_0_1_is_refused(held_out_model):
    _, train, model = held_out_model
    with pytest.raises(ValueError, match="decoded_response_weight must be between 0 and 1"):
        model.predict_perturbation(train[:5], "stimulated", decoded_response_weight=1.5)
