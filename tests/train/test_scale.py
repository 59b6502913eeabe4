"""Training that streams from sparse and backed AnnData, and multi-process (DDP) training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import anndata
import numpy as np
import pytest
import scvi
from scipy import sparse

import scgmvae


@pytest.fixture
def backed_toy(toy_counts, tmp_path):
    """toy counts written as CSR and opened with ``backed="r"``."""
    toy_counts.X = sparse.csr_matrix(toy_counts.X)
    path = tmp_path / "toy.h5ad"
    toy_counts.write_h5ad(path)
    return anndata.read_h5ad(path, backed="r"), toy_counts


def test_trains_on_backed_anndata_without_loading_it(backed_toy, max_epochs):
    backed, in_memory = backed_toy
    scgmvae.model.CGMVAE.setup_anndata(backed, condition_key="condition", labels_key="cell_type")
    model = scgmvae.model.CGMVAE(backed)
    model.train(max_epochs=max_epochs, enable_progress_bar=False)

    assert backed.isbacked
    assert not sparse.issparse(backed.X) and hasattr(backed.X, "to_memory")
    latent = model.get_latent_representation()
    assert latent.shape == (backed.n_obs, 10) and np.isfinite(latent).all()
    assert set(model.predict()) <= set(model.label_names)
    # the library-size statistics read in chunks match the in-memory ones
    totals = np.log(np.asarray(in_memory.X.sum(1)).ravel())
    codes = in_memory.obs["condition"].cat.codes.to_numpy()
    expected = [totals[codes == c].mean() for c in range(2)]
    np.testing.assert_allclose(model.module.library_log_means.numpy(), expected, rtol=1e-5)


def test_sparse_and_dense_input_give_the_same_model(toy_counts, max_epochs):
    latents = []
    for matrix in (np.asarray(toy_counts.X), sparse.csr_matrix(toy_counts.X)):
        adata = toy_counts.copy()
        adata.X = matrix
        scgmvae.model.GMVAE.setup_anndata(adata)
        scvi.settings.seed = 0
        model = scgmvae.model.GMVAE(adata, n_components=5)
        model.train(max_epochs=max_epochs, enable_progress_bar=False)
        latents.append(model.get_latent_representation())
        assert sparse.issparse(adata.X) == sparse.issparse(matrix)  # left as the user gave it
    np.testing.assert_allclose(latents[0], latents[1], atol=1e-5)


DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    import torch.distributed as dist
    import scgmvae

    torch.set_num_threads(1)
    adata = scgmvae.datasets.toy_blobs(n_cells_per_group=40, counts=True, seed=0)
    scgmvae.model.CGMVAE.setup_anndata(
        adata, condition_key="condition", labels_key="cell_type"
    )
    model = scgmvae.model.CGMVAE(adata)
    model.train(
        max_epochs=1, accelerator="cpu", devices=2, strategy="ddp", enable_progress_bar=False
    )
    result = {
        "world_size": dist.get_world_size(),
        "rank": dist.get_rank(),
        "trained": model.is_trained_,
        "history": sorted(model.history),
        "predicted": model.predict().tolist(),
        "labels": model.label_names,
        "latent_shape": list(model.get_latent_representation().shape),
        "buffers": [buffer.double().sum().item() for buffer in model.module.buffers()],
    }
    with open(sys.argv[1] + f".{result['rank']}", "w") as f:
        json.dump(result, f)
    """
)


@pytest.mark.slow
def test_ddp_training_on_two_cpu_processes(tmp_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "result"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Lightning's "ddp" relaunches the script itself for rank 1, so it must run as a script
    run = subprocess.run(
        [sys.executable, str(script), str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = [json.loads((tmp_path / f"result.{rank}").read_text()) for rank in (0, 1)]
    for rank, result in enumerate(results):
        assert result["rank"] == rank and result["world_size"] == 2
        assert result["trained"]
        assert len(result["predicted"]) == 400
        assert set(result["predicted"]) <= set(result["labels"])
        assert result["latent_shape"] == [400, 10]
    # scvi-tools keeps the history on the first process only
    assert {"kl_z_train", "classification_train", "elbo_train"} <= set(results[0]["history"])
    # both processes end with the same model, batch-norm running statistics included
    assert results[0]["buffers"] == results[1]["buffers"]
    assert results[0]["predicted"] == results[1]["predicted"]
