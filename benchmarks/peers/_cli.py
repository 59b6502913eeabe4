"""Shared command line, input and output of the peer scripts (scgen.py, cpa.py).

The peer scripts run in the peers' own virtual environments, which do not have scgmvae, so this
module uses only numpy, scipy, anndata and scanpy. Every script reads the training cells and the
control cells to predict from (raw counts in ``.X``) and writes one AnnData: the control cells'
``obs_names`` and ``obs``, the same ``var_names``, and ``.X`` = the predicted stimulated
expression as log1p of counts per 10,000. ``.uns["peer"]`` records the training time and the
versions of the libraries used.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from importlib import metadata
from pathlib import Path

import anndata
import numpy as np
from scipy import sparse

# counts per cell after normalisation: the space evaluate_perturbation compares in
TARGET_SUM = 1e4
# epochs of a --smoke run: enough to go through every code path
SMOKE_EPOCHS = 2


def hide_own_folder() -> None:
    """Drop this folder from ``sys.path``: its cpa.py and scgen.py must not shadow the peers."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]


def parser(description: str, max_epochs: int, batch_size: int) -> argparse.ArgumentParser:
    """The arguments every peer script takes; a script adds its own before parsing."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--train", required=True, help="h5ad with the training cells (counts)")
    p.add_argument("--control", required=True, help="h5ad with the control cells to predict")
    p.add_argument("--out", required=True, help="h5ad to write the prediction to")
    p.add_argument("--condition-key", default="condition")
    p.add_argument("--ctrl", default="control", help="control value of --condition-key")
    p.add_argument("--stim", default="stimulated", help="perturbed value of --condition-key")
    p.add_argument("--label-key", default="cell_type")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=max_epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--threads", type=int, default=1, help="CPU threads of torch / XLA")
    p.add_argument("--smoke", action="store_true", help=f"{SMOKE_EPOCHS} epochs, checks the code")
    return p


def limit_threads(threads: int) -> None:
    """Cap the math libraries' threads; call before importing jax or torch.

    One thread runs faster than two on the small benchmark machines, which other jobs share.
    """
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1".strip()
        )


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and (when installed) torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - libraries still draw from the legacy global state
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def read_inputs(args: argparse.Namespace) -> tuple[anndata.AnnData, anndata.AnnData]:
    """The training and control cells, checked for the columns and genes the scripts use."""
    train = anndata.read_h5ad(args.train)
    control = anndata.read_h5ad(args.control)
    for name, adata in (("train", train), ("control", control)):
        for key in (args.condition_key, args.label_key):
            if key not in adata.obs:
                raise KeyError(f"obs[{key!r}] is missing from the {name} cells")
    if list(train.var_names) != list(control.var_names):
        raise ValueError("The train and control cells have different genes")
    conditions = set(train.obs[args.condition_key].astype(str))
    missing = {args.ctrl, args.stim} - conditions
    if missing:
        raise ValueError(f"The training cells have no {sorted(missing)} cells")
    return train, control


def read_dense_log_normalized(
    args: argparse.Namespace,
) -> tuple[anndata.AnnData, anndata.AnnData]:
    """The training and control cells of :func:`read_inputs` in log1p CP10k, as dense arrays
    (for the peers whose networks take dense log-normalised input)."""
    train, control = read_inputs(args)
    train, control = log_normalize(train), log_normalize(control)
    train.X, control.X = dense(train.X), dense(control.X)
    return train, control


def dense(matrix) -> np.ndarray:
    """A dense float32 copy of a (sparse) matrix."""
    array = matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)
    return np.asarray(array, dtype=np.float32)


def log_normalize(adata: anndata.AnnData) -> anndata.AnnData:
    """A copy with ``.X`` = log1p(counts per 10,000), the scale scGen models."""
    import scanpy as sc

    out = adata.copy()
    sc.pp.normalize_total(out, target_sum=TARGET_SUM)
    sc.pp.log1p(out)
    return out


def write_prediction(
    path: str,
    control: anndata.AnnData,
    expression: np.ndarray,
    timer: Timer,
    packages: tuple[str, ...],
) -> None:
    """Write the predicted log1p(CP10k) expression of the control cells to ``path``."""
    expression = np.asarray(expression, dtype=np.float32)
    if expression.shape != control.shape:
        raise ValueError(f"prediction shape {expression.shape} != control shape {control.shape}")
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    out = anndata.AnnData(X=expression, obs=control.obs.copy(), var=control.var[[]].copy())
    out.uns["peer"] = {
        "train_seconds": float(timer.seconds),
        "train_cpu_seconds": float(timer.cpu_seconds),
        **versions,
    }
    out.write_h5ad(path)


class Timer:
    """Wall-clock seconds of a ``with`` block in ``.seconds``, CPU seconds in ``.cpu_seconds``.

    The CPU time (all threads of this process) is the steadier figure on a shared machine.
    """

    def __enter__(self) -> Timer:
        self._start, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start
        self.cpu_seconds = time.process_time() - self._cpu
