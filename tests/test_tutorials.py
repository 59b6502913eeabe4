"""Execute the tutorial notebooks with a few epochs (they are stored without outputs)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "tutorials"
NOTEBOOKS = ["kang_perturbation.ipynb", "pbmc_clustering.ipynb", "toy_experiment.ipynb"]
KERNEL_NAME = "python3"
EPOCHS = "3"
CELL_TIMEOUT = 600


@pytest.fixture
def notebook_env(monkeypatch, tmp_path):
    """Environment of the kernel: few epochs, the data folder, no display, this Python."""
    data_dir = os.environ.get("SCGMVAE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    monkeypatch.setenv("SCGMVAE_TUTORIAL_EPOCHS", EPOCHS)
    # the notebooks run in tutorials/, so a relative folder must be made absolute
    monkeypatch.setenv("SCGMVAE_DATA_DIR", str(Path(data_dir).resolve()))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # A "python3" kernel spec that runs this interpreter, found before any user-level spec of
    # the same name (JUPYTER_PATH is searched first), so the notebooks see this environment.
    spec_dir = tmp_path / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (scgmvae tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv(
        "JUPYTER_PATH",
        os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("JUPYTER_PATH")])),
    )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_tutorial_executes(name, notebook_env):
    path = TUTORIALS / name
    notebook = nbformat.read(path, as_version=4)
    stored_outputs = [
        i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code" and cell.outputs
    ]
    assert not stored_outputs, f"{name} is stored with outputs in cells {stored_outputs}"
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(TUTORIALS)}},
    )
    client.execute()  # raises CellExecutionError, failing the test, when a cell fails
