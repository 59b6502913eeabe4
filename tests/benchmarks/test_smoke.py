"""The benchmark scripts keep working: each runs in its --smoke mode (tiny, no table written)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


PEER_VARIABLES = {"scGen": "SCGMVAE_SCGEN_PYTHON", "CPA": "SCGMVAE_CPA_PYTHON"}


SMOKE_OUTPUT = {
    # GMVAE with the condition as its batch covariate is scored (the toy data have conditions)
    "clustering.py": r"'method': 'GMVAE K, condition as batch', 'seed': 0, 'ari': 0\.\d",
    "semi_supervised.py": None,
    # our models time the clustering step of the cluster initialisation; scVI has none
    "speed.py": r"'cluster init s': \d+\.\d+.*'method': 'GMVAE \(in memory\)'",
}
"""A pattern each script's smoke output must match, beyond the checks of ``_run_smoke``."""


@pytest.mark.parametrize("script", sorted(SMOKE_OUTPUT))
def test_benchmark_smoke(script, tmp_path):
    result = _run_smoke(script, tmp_path)
    if SMOKE_OUTPUT[script]:
        assert re.search(SMOKE_OUTPUT[script], result.stdout), result.stdout[-3000:]


def test_cluster_init_smoke_scores_every_clustering(tmp_path):
    result = _run_smoke("cluster_init.py", tmp_path, expected="final model")
    for row in (
        "the default's choice (the model's start)",
        "k-means, 10 restarts",
        "Gaussian mixture, full",
        "k-means into 2x as many, merged by Ward",
        "final model, default start",
        "final model, k-means start",
        "final model, merged start",
    ):
        assert row in result.stdout
    assert re.search(r"starts the default chose:\n\['(k-means|merged)'\]", result.stdout)


def test_perturbation_smoke_with_the_peers_set_up_or_not(tmp_path):
    """Peers whose Python is set up run and are scored; the others are skipped with a message.

    Without the variables (the README's test command) this checks the skip path; CI sets
    them to real scGen and CPA environments and checks that both peers run.
    """
    result = _run_smoke("perturbation.py", tmp_path)
    for label, variable in PEER_VARIABLES.items():
        if os.environ.get(variable):
            assert f"'method': '{label}'" in result.stdout, result.stdout[-3000:]
            assert f"{label} skipped" not in result.stdout
        else:
            assert f"{label} skipped: set {variable}" in result.stdout
    assert "'method': 'scVI latent arithmetic'" in result.stdout


def test_perturbation_bandwidth_smoke_runs_only_those_rows(tmp_path):
    result = _run_smoke("perturbation.py", tmp_path, "--bandwidths", "0.1", "0.5")
    for bandwidth in ("0.1", "0.5"):
        assert f"'method': 'CGMVAE, bandwidth {bandwidth}'" in result.stdout
    assert "scVI latent arithmetic" not in result.stdout
    assert "'method': 'CGMVAE route z'" not in result.stdout


def test_perturbation_smoke_without_peers(tmp_path):
    env = {variable: "" for variable in PEER_VARIABLES.values()}
    result = _run_smoke("perturbation.py", tmp_path, env=env)
    assert "scGen skipped" in result.stdout and "CPA skipped" in result.stdout
    assert "e_distance" in result.stdout  # the distribution scores are reported


def test_perturbation_benchmark_reads_the_full_data_file(tmp_path):
    # a stand-in for the public kang_2018.h5ad in pertpy's layout (conditions in obs["label"],
    # counts in layers["counts"]): the benchmark must find it locally, without downloading
    import scanpy as sc

    import scgmvae

    adata = scgmvae.datasets.kang_subset()
    adata.obs["label"] = adata.obs.pop("condition").map({"control": "ctrl", "stimulated": "stim"})
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    adata.write_h5ad(tmp_path / "kang_2018.h5ad")
    result = _run_smoke("perturbation.py", tmp_path, "--full")
    assert "CGMVAE route w" in result.stdout


def test_integration_smoke_on_a_stand_in(tmp_path):
    """Every part runs on a stand-in of the 5-donor file; absent scib-metrics or Harmony say so."""
    import importlib.util

    import numpy as np

    import scgmvae

    adata = scgmvae.datasets.kang_subset()
    adata.obs["batch"] = np.array(["d1", "d2", "d3", "d4"])[np.arange(adata.n_obs) % 4]
    adata.obs = adata.obs[["batch", "cell_type"]]
    adata.write_h5ad(tmp_path / "stand_in.h5ad")
    result = _run_smoke("integration.py", tmp_path, "--data", str(tmp_path / "stand_in.h5ad"))
    for module, package in (("scib_metrics", "scib-metrics"), ("harmonypy", "harmonypy")):
        skipped = f"skipped: {module} ({package} is not installed"
        assert (skipped in result.stdout) == (importlib.util.find_spec(module) is None)
    assert "'method': 'scANVI'" in result.stdout and "'method': 'GMVAE'" in result.stdout
    assert "interferon genes in the top 30" in result.stdout
    assert "expressed genes" in result.stdout  # the fold-change agreement table of the DE part


def _run_smoke(
    script: str,
    data_dir,
    *args: str,
    env: dict[str, str] | None = None,
    expected: str = "CGMVAE",
) -> subprocess.CompletedProcess:
    table = BENCHMARKS.parent / "docs" / "benchmarks.md"
    before = table.read_text() if table.exists() else None
    env = {**os.environ, "SCGMVAE_DATA_DIR": str(data_dir), **(env or {})}
    result = subprocess.run(
        [sys.executable, script, "--smoke", *args],
        cwd=BENCHMARKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert expected in result.stdout
    assert (table.read_text() if table.exists() else None) == before  # smoke runs write nothing
    return result
