from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import anndata
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import scgmvae.pl as pl
from scgmvae.tl._expression import log_normalize
from scgmvae.tl._perturbation import squared_pearson, top_degs

N_CELLS, N_GENES = 60, 50
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# scanpy's scatter plots call a matplotlib function that is due to be deprecated
pytestmark = pytest.mark.filterwarnings("ignore:The set_bad function:PendingDeprecationWarning")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def adata() -> anndata.AnnData:
    """Counts with the obs and obsm that scgmvae.tl.embed writes, plus a user UMAP."""
    rng = np.random.default_rng(0)
    rates = rng.gamma(2.0, 2.0, N_GENES)
    stimulated = np.arange(N_CELLS) % 2 == 1
    rates_per_cell = np.where(stimulated[:, None], rates * np.linspace(0.5, 2.0, N_GENES), rates)
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical(np.where(stimulated, "stimulated", "control")),
            "cell_type": pd.Categorical(rng.choice(["B", "T", "NK"], N_CELLS)),
            "scgmvae_component": pd.Categorical(rng.integers(0, 3, N_CELLS)),
            "scgmvae_prediction": pd.Categorical(rng.choice(["B", "T", "NK"], N_CELLS)),
        },
        index=[f"cell_{i}" for i in range(N_CELLS)],
    )
    adata = anndata.AnnData(
        X=rng.poisson(rates_per_cell).astype(np.float32),
        obs=obs,
        var=pd.DataFrame(index=[f"gene_{i}" for i in range(N_GENES)]),
    )
    adata.obsm["X_scgmvae_z"] = rng.normal(size=(N_CELLS, 8))
    adata.obsm["X_scgmvae_w"] = rng.normal(size=(N_CELLS, 4))
    adata.obsm["X_umap"] = rng.normal(size=(N_CELLS, 2))
    return adata


@pytest.fixture
def split(adata):
    """(predicted, real stimulated, control): the prediction is log-normalised, as returned."""
    real = adata[adata.obs["condition"] == "stimulated"].copy()
    control = adata[adata.obs["condition"] == "control"].copy()
    predicted = log_normalize(real).copy()
    predicted.X = predicted.X + np.random.default_rng(1).normal(0, 0.3, predicted.shape)
    return predicted, real, control


@pytest.fixture
def generated(adata) -> anndata.AnnData:
    """Cells shaped like the output of BaseGMVAE.generate()."""
    rng = np.random.default_rng(2)
    n = 30
    obs = pd.DataFrame(
        {
            "component": pd.Categorical(np.repeat([0, 1, 2], n // 3)),
            "label": pd.Categorical(np.repeat(["B", "T", None], n // 3)),
            "condition": pd.Categorical(np.tile(["control", "stimulated"], n // 2)),
            "synthetic": True,
        },
        index=[f"synthetic_{i}" for i in range(n)],
    )
    x = np.log1p(rng.gamma(2.0, 2.0, (n, N_GENES))).astype(np.float32)
    return anndata.AnnData(X=x, obs=obs, var=pd.DataFrame(index=adata.var_names.copy()))


def _assert_png(path) -> None:
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == PNG_MAGIC


def _means(adata: anndata.AnnData) -> np.ndarray:
    return np.asarray(log_normalize(adata).X, dtype=np.float64).mean(0)


def _gene_labels(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_text().startswith("gene_")]


def _r2_text(ax: Axes) -> str:
    (text,) = [t.get_text() for t in ax.texts if "R² all genes" in t.get_text()]
    return text


def test_mean_regression_r2_and_labels(split, tmp_path):
    predicted, real, _ = split
    degs = list(real.var_names[[3, 10, 20, 30, 40, 45]])
    ax = pl.mean_regression(
        predicted, real, degs=degs, n_labels=4, show=False, save=tmp_path / "reg.png"
    )

    assert isinstance(ax, Axes)
    _assert_png(tmp_path / "reg.png")
    x, y = _means(real), _means(predicted)
    idx = real.var_names.get_indexer(degs)
    shown = re.findall(r"R² (all genes|top DEGs) = (\S+)", _r2_text(ax))
    assert shown == [
        ("all genes", f"{squared_pearson(x, y):.3f}"),
        ("top DEGs", f"{squared_pearson(x[idx], y[idx]):.3f}"),
    ]
    assert _gene_labels(ax) == degs[:4]
    assert len(ax.lines) == 1  # the regression line


def test_mean_regression_labels_do_not_overlap(split):
    predicted, real, _ = split
    # the labelled genes sit close together, so their names would overlap where they are
    degs = list(real.var_names[:12])
    ax = pl.mean_regression(predicted, real, degs=degs, n_labels=12, show=False)
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text() in degs]
    assert len(boxes) == 12
    overlaps = [(i, j) for i in range(12) for j in range(i) if boxes[i].overlaps(boxes[j])]
    assert not overlaps


def test_mean_regression_degs_from_control(split):
    predicted, real, control = split
    ax = pl.mean_regression(predicted, real, control=control, n_labels=5, show=False)
    assert _gene_labels(ax) == top_degs(real, control, 100)[:5]
    assert "R² top DEGs" in _r2_text(ax)


def test_mean_regression_counts_or_log_and_given_axes(split):
    predicted, real, _ = split
    _, (left, right) = plt.subplots(1, 2)
    assert pl.mean_regression(predicted, real, ax=left, title="counts") is left
    pl.mean_regression(predicted, log_normalize(real), ax=right)
    assert _r2_text(left) == _r2_text(right)
    assert "top DEGs" not in _r2_text(left)
    assert left.get_title() == "counts"


def test_show_save_and_return_fig_as_in_scanpy(split, monkeypatch):
    predicted, real, _ = split
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(True))
    assert pl.mean_regression(predicted, real) is None  # shown by default
    assert shown == [True]
    fig = pl.mean_regression(predicted, real, return_fig=True)
    assert isinstance(fig, Figure) and shown == [True]
    _, ax = plt.subplots()
    assert pl.mean_regression(predicted, real, ax=ax) is ax  # given axes: not shown
    assert pl.mean_regression(predicted, real, ax=ax, show=True) is None
    assert shown == [True, True]


def test_mean_regression_bad_genes(split):
    predicted, real, control = split
    with pytest.raises(ValueError, match="predicted cells have other genes"):
        pl.mean_regression(predicted[:, ::-1], real)
    with pytest.raises(ValueError, match="control cells have other genes"):
        pl.mean_regression(predicted, real, control=control[:, :10])
    with pytest.raises(ValueError, match="not_a_gene"):
        pl.mean_regression(predicted, real, degs=["gene_1", "not_a_gene"])


@pytest.mark.slow  # numba compiles UMAP on first use
def test_latent_umap_keeps_user_umap_and_reuses_coordinates(adata, monkeypatch, tmp_path):
    user_umap = adata.obsm["X_umap"].copy()
    calls = []
    umap = sc.tl.umap
    monkeypatch.setattr(sc.tl, "umap", lambda *a, **k: calls.append(1) or umap(*a, **k))

    fig = pl.latent_umap(adata, save=tmp_path / "z.png", return_fig=True)

    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == [
        "z: scgmvae_prediction",
        "z: scgmvae_component",
        "z: condition",
    ]
    _assert_png(tmp_path / "z.png")
    np.testing.assert_array_equal(adata.obsm["X_umap"], user_umap)
    assert "neighbors" not in adata.uns
    assert "connectivities" not in adata.obsp
    coords = adata.obsm["X_umap_scgmvae_z"].copy()
    assert coords.shape == (N_CELLS, 2)

    axes = pl.latent_umap(adata, color="condition", show=False)
    assert [ax.get_title() for ax in axes] == ["z: condition"]
    assert len(calls) == 1
    np.testing.assert_array_equal(adata.obsm["X_umap_scgmvae_z"], coords)
    pl.latent_umap(adata, color="condition", recompute=True, show=False)
    assert len(calls) == 2


@pytest.mark.slow  # numba compiles UMAP on first use
@pytest.mark.usefixtures("one_torch_thread")
def test_latent_umap_keeps_torch_thread_count(adata):
    # scanpy's neighbour search resets torch to one thread per core
    pl.latent_umap(adata, show=False)
    assert torch.get_num_threads() == 1


def test_latent_umap_skips_absent_colors(adata, caplog):
    adata.obsm["X_umap_scgmvae_w"] = np.random.default_rng(3).normal(size=(N_CELLS, 2))
    with caplog.at_level(logging.WARNING, logger="scgmvae"):
        axes = pl.latent_umap(
            adata, representation="w", color=("not_a_column", "cell_type"), show=False
        )
    assert [ax.get_title() for ax in axes] == ["w: cell_type"]
    assert "not_a_column" in caplog.text


def test_latent_umap_wraps_panels_in_rows(adata):
    adata.obsm["X_umap_scgmvae_z"] = np.random.default_rng(4).normal(size=(N_CELLS, 2))
    colors = ["cell_type", "condition", "scgmvae_prediction"]
    fig = pl.latent_umap(adata, color=colors, ncols=2, return_fig=True)
    assert [ax.get_title() for ax in fig.axes] == [f"z: {c}" for c in colors]
    first, second, third = (ax.get_position() for ax in fig.axes)
    assert first.y0 == pytest.approx(second.y0) and third.y0 < first.y0  # two rows
    assert third.x0 == pytest.approx(first.x0)
    assert fig.get_size_inches()[1] > fig.get_size_inches()[0] / 2  # two rows of two
    plt.close(fig)


def test_latent_umap_missing_representation(adata):
    del adata.obsm["X_scgmvae_z"]
    with pytest.raises(ValueError, match=r"X_scgmvae_z.*run scgmvae\.tl\.embed\(model, adata\)"):
        pl.latent_umap(adata, show=False)


@pytest.mark.slow  # numba compiles UMAP on first use
def test_generated_vs_real(adata, generated, tmp_path):
    before = adata.copy()
    axes = pl.generated_vs_real(adata, generated, save=tmp_path / "gen.png", show=False)

    assert [ax.get_title() for ax in axes] == ["synthetic", "condition", "label"]
    _assert_png(tmp_path / "gen.png")
    for ax in axes:
        real_dots, generated_rings = ax.collections
        assert len(real_dots.get_offsets()) == adata.n_obs
        assert len(generated_rings.get_offsets()) == generated.n_obs
        # rings are hollow, so the real cells underneath stay visible
        assert np.all(generated_rings.get_facecolors()[:, 3] == 0)
        legend = [text.get_text() for text in ax.get_legend().get_texts()]
        assert legend[-2:] == ["real", "generated"]
    np.testing.assert_array_equal(adata.X, before.X)
    assert list(adata.obsm) == list(before.obsm)
    assert list(adata.obs.columns) == list(before.obs.columns)


def test_generated_vs_real_bad_input(adata, generated):
    with pytest.raises(ValueError, match=r"'celltype'.*real_label_key"):
        pl.generated_vs_real(adata, generated, real_label_key="celltype", show=False)
    other = generated.copy()
    other.var_names = [f"other_{i}" for i in range(other.n_vars)]
    with pytest.raises(ValueError, match="no genes in common"):
        pl.generated_vs_real(adata, other, show=False)


def test_loss_history(tmp_path, caplog):
    epochs = pd.Index(range(5), name="epoch")
    history = {
        f"{term}_{split}": pd.DataFrame({f"{term}_{split}": np.linspace(2, 1, 5)}, index=epochs)
        for term in ("reconstruction", "kl_z", "kl_w")
        for split in ("train", "validation")
    }
    del history["kl_w_validation"]
    with caplog.at_level(logging.WARNING, logger="scgmvae"):
        axes = pl.loss_history(
            SimpleNamespace(history=history), save=tmp_path / "loss.png", show=False
        )

    assert [ax.get_title() for ax in axes] == ["reconstruction", "kl_z", "kl_w"]
    assert [len(ax.lines) for ax in axes] == [2, 2, 1]
    assert "kl_y" in caplog.text
    _assert_png(tmp_path / "loss.png")
    with pytest.raises(ValueError, match="train the model first"):
        pl.loss_history(SimpleNamespace(history=None), show=False)
