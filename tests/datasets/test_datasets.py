from __future__ import annotations

import hashlib
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pooch
import pytest
from scipy import sparse
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

from scgmvae.datasets import kang, kang_subset, toy_blobs

REPO = Path(__file__).resolve().parents[2]


# --- toy_blobs ----------------------------------------------------------------------------------


def _group_means(adata: ad.AnnData) -> np.ndarray:
    """Means of every (class, condition) group, shape classes × conditions × dims."""
    x = np.asarray(adata.X)
    cls = adata.obs["cell_type"].cat.codes.to_numpy()
    cond = adata.obs["condition"].cat.codes.to_numpy()
    return np.stack(
        [
            [x[(cls == k) & (cond == j)].mean(axis=0) for j in range(cond.max() + 1)]
            for k in range(cls.max() + 1)
        ]
    )


def test_toy_blobs_defaults():
    adata = toy_blobs()
    assert adata.shape == (2000, 16)
    assert isinstance(adata.X, np.ndarray)
    assert adata.X.dtype == np.float32
    assert list(adata.var_names[:2]) == ["dim_0", "dim_1"]
    assert adata.obs_names.is_unique
    assert list(adata.obs["cell_type"].cat.categories) == [f"class_{k}" for k in range(5)]
    assert list(adata.obs["condition"].cat.categories) == ["control", "stimulated"]
    groups = adata.obs.groupby(["cell_type", "condition"], observed=True).size()
    assert len(groups) == 10
    assert (groups == 200).all()
    params = adata.uns["toy_blobs"]
    assert params["n_classes"] == 5
    assert params["seed"] == 0
    assert params["class_centers"].shape == (5, 16)
    assert params["condition_shifts"].shape == (5, 2, 16)


def test_toy_blobs_options():
    adata = toy_blobs(n_cells_per_group=3, n_classes=3, n_conditions=3, n_dims=4)
    assert adata.shape == (27, 4)
    assert list(adata.obs["condition"].cat.categories) == [
        "condition_0",
        "condition_1",
        "condition_2",
    ]
    assert list(toy_blobs(n_conditions=1).obs["condition"].cat.categories) == ["control"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_classes": 0}, "n_classes"),
        ({"n_classes": 20}, "n_dims"),
        ({"noise": 0.0}, "noise"),
        ({"class_scale": -1.0}, "class_scale"),
    ],
)
def test_toy_blobs_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        toy_blobs(**kwargs)


def test_toy_blobs_seed():
    np.testing.assert_array_equal(toy_blobs(seed=3).X, toy_blobs(seed=3).X)
    assert not np.allclose(toy_blobs(seed=3).X, toy_blobs(seed=4).X)


def test_toy_blobs_class_shift_exceeds_condition_shift():
    means = _group_means(toy_blobs())
    class_means = means.mean(axis=1)
    class_dist = np.linalg.norm(class_means[:, None] - class_means[None], axis=-1)
    min_class_dist = class_dist[np.triu_indices(len(class_means), k=1)].min()
    max_condition_dist = np.linalg.norm(means[:, 1] - means[:, 0], axis=-1).max()
    assert max_condition_dist > 1.0  # the condition effect is real ...
    assert min_class_dist > 2 * max_condition_dist  # ... but smaller than a class switch


@pytest.mark.parametrize("counts", [False, True])
def test_toy_blobs_classes_recoverable_unsupervised(counts):
    adata = toy_blobs(counts=counts)
    x = np.log1p(adata.X) if counts else adata.X
    pred = KMeans(5, n_init=5, random_state=0).fit_predict(x)
    table = pd.crosstab(adata.obs["cell_type"].to_numpy(), pred).to_numpy()
    rows, cols = linear_sum_assignment(-table)
    assert table[rows, cols].sum() / adata.n_obs >= 0.95


def test_toy_blobs_counts():
    adata = toy_blobs(counts=True)
    assert adata.X.dtype == np.float32
    assert adata.X.min() >= 0
    np.testing.assert_array_equal(adata.X, np.round(adata.X))
    assert adata.X.mean() > 1  # not almost all zeros
    assert adata.uns["toy_blobs"]["counts"] is True


# --- kang ---------------------------------------------------------------------------------------


def _write_fake_kang(directory: Path) -> Path:
    """Write a tiny stand-in for pertpy's kang_2018.h5ad: label ctrl/stim and a counts layer."""
    rng = np.random.default_rng(0)
    counts = sparse.csr_matrix(rng.poisson(1.0, size=(6, 4)).astype(np.float32))
    adata = ad.AnnData(
        # Normalised values in .X, as some copies of the file have; the loader must use counts.
        X=np.log1p(counts.toarray()),
        obs=pd.DataFrame(
            {
                "label": ["ctrl", "stim"] * 3,
                "cell_type": ["B", "B", "T", "T", "NK", "NK"],
                "replicate": ["p1", "p1", "p2", "p2", "p3", "p3"],
            },
            index=[f"cell{i}" for i in range(6)],
        ),
        var=pd.DataFrame(index=[f"gene{j}" for j in range(4)]),
        layers={"counts": counts},
    )
    file = directory / "kang_2018.h5ad"
    adata.write_h5ad(file)
    return file


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


@pytest.fixture
def no_network(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("pooch.retrieve must not be called when the file is cached")

    monkeypatch.setattr(pooch, "retrieve", fail)


def _check_fake_kang(adata: ad.AnnData) -> None:
    assert adata.shape == (6, 4)
    assert list(adata.obs["condition"]) == ["control", "stimulated"] * 3
    assert list(adata.obs["condition"].cat.categories) == ["control", "stimulated"]
    assert isinstance(adata.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert isinstance(adata.obs["replicate"].dtype, pd.CategoricalDtype)
    np.testing.assert_array_equal(adata.X.toarray(), adata.layers["counts"].toarray())


def test_kang_reads_path_without_network(tmp_path, no_network, monkeypatch):
    monkeypatch.delenv("SCGMVAE_DATA_DIR", raising=False)
    file = _write_fake_kang(tmp_path)
    digest = _sha256(file)
    _check_fake_kang(kang(tmp_path))
    _check_fake_kang(kang(file))
    assert _sha256(file) == digest  # the file on disk is left alone


def test_kang_reads_env_dir_without_network(tmp_path, no_network, monkeypatch):
    _write_fake_kang(tmp_path)
    monkeypatch.setenv("SCGMVAE_DATA_DIR", str(tmp_path))
    _check_fake_kang(kang())


def test_kang_missing_without_download(tmp_path, no_network):
    with pytest.raises(FileNotFoundError) as info:
        kang(tmp_path, download=False)
    message = str(info.value)
    for part in ("kang_2018.h5ad", str(tmp_path.resolve()), "exampledata.scverse.org"):
        assert part in message
    assert "SCGMVAE_DATA_DIR" in message


def test_kang_downloads_into_chosen_dir(tmp_path, monkeypatch):
    calls = []

    def fake_retrieve(url, known_hash, fname, path, **kwargs):
        calls.append((url, fname, Path(path)))
        return str(_write_fake_kang(Path(path)))

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    monkeypatch.setenv("SCGMVAE_DATA_DIR", str(tmp_path))
    _check_fake_kang(kang())
    assert calls == [
        (
            "https://exampledata.scverse.org/pertpy/kang_2018.h5ad",
            "kang_2018.h5ad",
            tmp_path.resolve(),
        )
    ]


def test_kang_download_failure(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(RuntimeError, match=r"kang_2018\.h5ad.*no route to host.*SCGMVAE_DATA_DIR"):
        kang(tmp_path)


# --- kang_subset --------------------------------------------------------------------------------


def test_kang_subset_is_embedded(monkeypatch):
    monkeypatch.delenv("SCGMVAE_DATA_DIR", raising=False)
    adata = kang_subset()
    assert adata.shape == (832, 14053)
    assert list(adata.obs["condition"].cat.categories) == ["control", "stimulated"]
    assert set(adata.obs["condition"]) == {"control", "stimulated"}
    assert list(adata.obs["cell_type"].cat.categories) == [
        "B",
        "CD14 Mono",
        "CD16 Mono",
        "CD4 Memory T",
        "CD4 Naive T",
        "CD8 T",
    ]
    values = adata.X.data if sparse.issparse(adata.X) else np.asarray(adata.X)
    assert values.min() >= 0
    np.testing.assert_array_equal(values, np.round(values))


def test_kang_subset_from_a_path(tmp_path):
    embedded = kang_subset()
    embedded.obs["marker"] = "copy"
    embedded.write_h5ad(tmp_path / "kang_ifnb_832.h5ad")
    for path in (tmp_path, tmp_path / "kang_ifnb_832.h5ad"):
        assert (kang_subset(path).obs["marker"] == "copy").all()
    with pytest.raises(FileNotFoundError, match=r"kang_ifnb_832\.h5ad was not found.*without"):
        kang_subset(tmp_path / "elsewhere")
