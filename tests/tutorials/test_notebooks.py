"""The tutorials are stored with their outputs, and still run (few epochs, on a copy)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TUTORIALS = REPO / "tutorials"
NOTEBOOKS = sorted(path.name for path in TUTORIALS.glob("*.ipynb"))
KERNEL_NAME = "python3"  # the kernel spec run_tutorials.use_this_python writes
EPOCHS = "3"
CELL_TIMEOUT = 600


def _runner():
    """tutorials/run_tutorials.py, which also stores the outputs (not a package module)."""
    spec = importlib.util.spec_from_file_location("run_tutorials", TUTORIALS / "run_tutorials.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def notebook_env(monkeypatch, tmp_path):
    """Environment of the kernel: few epochs, no display, this Python."""
    monkeypatch.setenv("SCGMVAE_TUTORIAL_EPOCHS", EPOCHS)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JUPYTER_PATH", "")  # restored after the test; set by use_this_python
    _runner().use_this_python(tmp_path)


def test_there_are_tutorials():
    assert {"kang_perturbation.ipynb", "pbmc_clustering.ipynb"} <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_tutorial_is_stored_with_its_figures(name):
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    unrun = [i for i, cell in enumerate(code) if cell.execution_count is None]
    assert not unrun, f"{name}: code cells {unrun} are stored without being run"
    images = [
        output for cell in code for output in cell.outputs if "image/png" in output.get("data", {})
    ]
    assert images, f"{name} is stored without figures; run tutorials/run_tutorials.py"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_tutorial_executes(name, notebook_env):
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    stored = (TUTORIALS / name).read_bytes()
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(TUTORIALS)}},
    )
    client.execute()  # raises CellExecutionError, failing the test, when a cell fails
    assert (TUTORIALS / name).read_bytes() == stored  # the stored outputs stay as they were
