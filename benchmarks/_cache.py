"""Predictions kept on disk, so that a rerun does not retrain what has not changed.

A prediction is stored under a key made of everything it depends on: the method and its
settings, the training cells and genes, the seed and, for scgmvae's own models, a hash of the
package's source. Scores are always recomputed from the stored predictions, so changing a score
needs no retraining. The folder is ``benchmarks/.cache`` (git ignores it); set
``SCGMVAE_BENCHMARK_CACHE=0`` to train everything afresh.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import anndata

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
CACHE_ENV = "SCGMVAE_BENCHMARK_CACHE"


def enabled() -> bool:
    return os.environ.get(CACHE_ENV, "1") != "0"


def digest(*parts) -> str:
    """A short hash of ``parts``, each turned into text."""
    text = "\x1f".join(map(str, parts))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def data_digest(train: anndata.AnnData, control: anndata.AnnData) -> str:
    """Which cells a method trains on and predicts from, on which genes."""
    return digest(*train.obs_names, "|", *control.obs_names, "|", *train.var_names)


def source_digest(package_dir: Path) -> str:
    """A hash of every Python file of a package: any change of the code changes the key."""
    files = sorted(package_dir.rglob("*.py"))
    return digest(*(f"{path.relative_to(package_dir)}:{path.read_bytes()!r}" for path in files))


def cached(key: str, compute: Callable[[], anndata.AnnData | None]) -> anndata.AnnData | None:
    """The stored prediction of ``key``, or ``compute()``'s, stored for the next run."""
    path = CACHE_DIR / f"{key}.h5ad"
    if enabled() and path.is_file():
        return anndata.read_h5ad(path)
    predicted = compute()
    if enabled() and predicted is not None:
        CACHE_DIR.mkdir(exist_ok=True)
        predicted.write_h5ad(path)
    return predicted
