"""The Python examples of the README and the docs pages run as written, as a user runs them.

Each page's ``python`` blocks are joined into one script and run with ``python script.py`` in a
fresh interpreter and an empty folder: no fixture of this suite, no seed, no package data
beyond what the package ships. A block preceded by a line ``% example: not run (reason)``
(a MyST comment, invisible on the page) is only compiled; the reason says why it cannot run
here (e.g. it needs GPUs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import scanpy as sc

import scgmvae

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PAGES = [
    REPO / "README.md",
    *sorted(
        page
        for page in (REPO / "docs").rglob("*.md")
        if "_build" not in page.relative_to(REPO / "docs").parts
    ),
]
"""The README and every page of the docs, in subfolders too (such as docs/benchmarks/)."""
BLOCK = re.compile(
    r"(?P<marker>^% example: not run \(.+\)\n)?^```python\n(?P<code>.*?)^```", re.M | re.S
)
EXAMPLE_TIMEOUT = 900
ATLAS_FILE = "atlas.h5ad"
"""The user's file that the scaling page reads; the test writes the embedded Kang cells there."""
ATLAS_GENES = 2000
"""Genes of that stand-in: its examples train twice (in memory and with DDP)."""


def _blocks(page: Path) -> list[tuple[str, bool]]:
    """Each ``python`` block of a page, and whether it is marked as not run."""
    return [
        (match["code"], match["marker"] is not None) for match in BLOCK.finditer(page.read_text())
    ]


PAGES_WITH_EXAMPLES = [page for page in PAGES if _blocks(page)]


def test_the_pages_with_examples_are_found():
    names = {page.name for page in PAGES_WITH_EXAMPLES}
    assert {"README.md", "index.md", "scaling.md"} <= names


def _user_folder(tmp_path: Path) -> Path:
    """An empty folder with the files the examples name, as a user would have them."""
    folder = tmp_path / "user"
    folder.mkdir()
    atlas = scgmvae.datasets.kang_subset()
    sc.pp.highly_variable_genes(atlas, n_top_genes=ATLAS_GENES, flavor="seurat_v3", subset=True)
    atlas.write_h5ad(folder / ATLAS_FILE)
    return folder


def _environment() -> dict[str, str]:
    """The user's environment: no display, one OpenMP thread, nothing of this suite."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST", "SCGMVAE_"))
    }
    environment.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return environment


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES, ids=lambda page: page.name)
def test_examples_run_as_written(page, tmp_path):
    blocks = _blocks(page)
    for code, _ in blocks:
        compile(code, str(page), "exec")  # every block, run or not, is valid Python
    script = "\n".join(code for code, not_run in blocks if not not_run)
    folder = _user_folder(tmp_path)
    (folder / "example.py").write_text(script)
    result = subprocess.run(
        [sys.executable, "example.py"],
        cwd=folder,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
    )
    assert result.returncode == 0, f"{page.name}:\n{script}\n{result.stderr[-4000:]}"
