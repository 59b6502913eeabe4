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


def _peer_variables() -> dict[str, str]:
    """Each peer of ``benchmarks/_peers.py`` by label, with the variable naming its Python."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from _peers import PEERS
    finally:
        sys.path.remove(str(BENCHMARKS))
    return {peer.label: peer.env_var for peer in PEERS.values()}


PEER_VARIABLES = _peer_variables()
MODEL_FREE_ROWS = (
    "pooled shift",
    "similarity-weighted shift",
    "nearest-type shift",
    "control as prediction",
    "noise ceiling",
    "borrowing bound",
)
"""Rows of the perturbation benchmark that need no model: its baselines and the two reference
rows (the noise ceiling and the borrowing bound)."""


SMOKE_OUTPUT = {
    # GMVAE with the condition as its batch covariate is scored (the toy data have conditions),
    # and with a dispersion per cell (the toy data are counts)
    "clustering.py": (
        r"'method': 'GMVAE K, condition as batch', 'seed': 0, 'ari': 0\.\d(.|\n)*"
        r"'method': 'GMVAE K, dispersion per cell', 'seed': 0, 'ari': 0\.\d"
    ),
    "semi_supervised.py": None,
    # every method is scored on every group, the real cells included (the floor), then the
    # count of groups that meet the AUC goal, per classifier
    "generation.py": (
        r"CGMVAE generate +[01]\.\d+(.|\n)*CGMVAE generate sample_z +[01]\.\d+(.|\n)*"
        r"CGMVAE generate posterior +[01]\.\d+(.|\n)*"
        r"scVI posterior predictive +[01]\.\d+(.|\n)*real training cells +[01]\.\d+(.|\n)*"
        r"classifier_auc +classifier_auc_forest\s+method\s+(.|\n)*real training cells +\d+ +\d+"
    ),
    # a held-out pseudo-donor: CGMVAE, the per-type mean and quantile shifts and the ceiling,
    # then the figure
    "perturbation_donors.py": (
        r"CGMVAE +0\.\d+(.|\n)*per-type mean shift \(other donors\) +0\.\d+(.|\n)*"
        r"per-type quantile shift \(training cells\) +0\.\d+(.|\n)*"
        r"noise ceiling +0\.\d+(.|\n)*figure written"
    ),
    # our models time the clustering step of the cluster initialisation (scVI has none), and
    # CGMVAE its perturbation prediction
    "speed.py": (
        r"'cluster init s': \d+\.\d+.*'method': 'GMVAE \(in memory\)'(.|\n)*"
        r"'predict_perturbation s': \d+\.\d+.*'method': 'CGMVAE \(in memory\)'"
    ),
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
    The model-free rows are scored beside the models, with the calibrated scores, and the
    figure is drawn (into a temporary folder: smoke runs write nothing).

    Without the variables (the README's test command) this checks the skip path; CI sets
    them to real peer environments and checks that those peers run.
    """
    result = _run_smoke("perturbation.py", tmp_path)
    for label, variable in PEER_VARIABLES.items():
        if os.environ.get(variable):
            assert f"'method': '{label}'" in result.stdout, result.stdout[-3000:]
            assert f"{label} skipped" not in result.stdout
        else:
            assert f"{label} skipped: set {variable}" in result.stdout
    assert "'method': 'scVI latent arithmetic'" in result.stdout
    for row in MODEL_FREE_ROWS:
        assert f"'method': '{row}'" in result.stdout, result.stdout[-3000:]
    # every score of evaluate_perturbation, and the control-split ones, reach the rows
    for score in (
        "e_distance",
        "pcc_delta_top_degs",
        "pcc_type_specific_top_degs",
        "r2_lfc_top_degs_ctrl_split",
    ):
        assert f"'{score}': " in result.stdout
    assert re.search(r"- \S.*: nearest .* \(r = 0\.\d+\); weights", result.stdout)
    assert "figure written" in result.stdout


def test_perturbation_bandwidth_smoke_runs_only_those_rows(tmp_path):
    result = _run_smoke("perturbation.py", tmp_path, "--bandwidths", "0.1", "0.5")
    for bandwidth in ("0.1", "0.5"):
        assert f"'method': 'CGMVAE, bandwidth {bandwidth}'" in result.stdout
    assert "scVI latent arithmetic" not in result.stdout
    assert "'method': 'CGMVAE route z'" not in result.stdout
    assert "'method': 'pooled shift'" not in result.stdout


def test_perturbation_smoke_of_another_dispersion_and_seed(tmp_path):
    # another dispersion trains CGMVAE alone (the peers and scVI do not depend on it), beside
    # the model-free rows; --first-seed runs that seed, not seed 0
    result = _run_smoke(
        "perturbation.py", tmp_path, "--dispersion", "gene-cell", "--first-seed", "1"
    )
    assert "'seed': 1, 'method': 'CGMVAE'" in result.stdout, result.stdout[-3000:]
    assert "'seed': 0" not in result.stdout
    assert "scVI latent arithmetic" not in result.stdout
    for label in PEER_VARIABLES:
        assert label not in result.stdout
    for row in MODEL_FREE_ROWS:
        assert f"'method': '{row}'" in result.stdout


def test_perturbation_benchmark_reads_the_full_data_file(tmp_path):
    # a stand-in for kang_ifnb_6donors.h5ad in $SCGMVAE_DATA_DIR: --full reads it (never the
    # network) and holds out the types with at least 150 stimulated cells, here CD14 Mono only;
    # in scPerturBench's protocol (5,000 HVGs, t-test DEGs), with two donors for the pseudobulk
    import numpy as np

    import scgmvae

    adata = scgmvae.datasets.kang_subset()
    adata.obs["donor"] = np.where(np.arange(adata.n_obs) % 2 == 0, "1015", "1016")
    adata.write_h5ad(tmp_path / "kang_ifnb_6donors.h5ad")
    env = {variable: "" for variable in PEER_VARIABLES.values()}
    result = _run_smoke("perturbation.py", tmp_path, "--full", "--scperturbench", env=env)
    assert "held-out types: ['CD14 Mono']" in result.stdout
    assert "'cell_type': 'CD14 Mono'" in result.stdout and "CGMVAE route w" in result.stdout
    assert re.search(r"'method': 'CGMVAE', .*'pcc_delta_top_degs': 0\.\d", result.stdout)
    # the decoding routes keep counts: their pseudobulk DEGs are scored, the default's are not
    assert re.search(
        r"'method': 'CGMVAE route z', .*'overlap_pseudobulk_degs': 0\.\d", result.stdout
    )
    assert not re.search(r"'method': 'CGMVAE', .*'overlap_pseudobulk_degs'", result.stdout)
    # and the real cells' own agreement is beside them: the noise ceiling's split halves
    assert re.search(
        r"'method': 'noise ceiling', .*'overlap_pseudobulk_degs': [01]\.\d", result.stdout
    )


@pytest.mark.parametrize("data_dir", ["", "empty"])
def test_the_full_data_file_missing_names_the_variable_and_the_file(
    tmp_path, data_dir, monkeypatch
):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from _common import kang_6donors_path
    finally:
        sys.path.remove(str(BENCHMARKS))
    monkeypatch.setenv("SCGMVAE_DATA_DIR", str(tmp_path) if data_dir else "")
    with pytest.raises(SystemExit) as exit_info:
        kang_6donors_path()
    message = str(exit_info.value)
    assert "kang_ifnb_6donors.h5ad not found" in message
    assert "SCGMVAE_DATA_DIR" in message


def test_integration_smoke_on_a_stand_in(tmp_path):
    """Every part runs on a stand-in of the 5-donor file; absent scib-metrics or Harmony say so."""
    import importlib.util

    import numpy as np

    import scgmvae

    adata = scgmvae.datasets.kang_subset()
    adata.obs["batch"] = np.array(["d1", "d2", "d3", "d4"])[np.arange(adata.n_obs) % 4]
    adata.obs = adata.obs[["batch", "cell_type"]]
    adata.write_h5ad(tmp_path / "stand_in.h5ad")
    # our models train with a dispersion per cell through both parts
    result = _run_smoke(
        "integration.py",
        tmp_path,
        "--data",
        str(tmp_path / "stand_in.h5ad"),
        "--dispersion",
        "gene-cell",
    )
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
    docs = BENCHMARKS.parent / "docs"
    pages = [docs / "benchmarks.md", *sorted((docs / "benchmarks").glob("*.md"))]
    before = {page: page.read_text() for page in pages}
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
    assert {page: page.read_text() for page in pages} == before  # smoke runs write nothing
    return result
