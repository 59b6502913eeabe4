"""Run the real peers (scGen, CPA, trVAE, scPRAM) from the benchmarks, each in its own Python.

The peers need other Python versions and library pins than scgmvae (pertpy >= 1.x: Python
>= 3.12 with JAX; cpa-tools: Python < 3.11, torch <= 2.0.1, scvi-tools < 1.0; scarches: anndata
< 0.12; scpram: scanpy 1.9.3, POT 0.9.1, numpy < 2), so each runs as a script of
``benchmarks/peers/`` under the Python named by an environment variable:

========  =========================  =============================================
peer      variable                   what that Python needs
========  =========================  =============================================
scgen     ``SCGMVAE_SCGEN_PYTHON``   ``pertpy[jax]`` (Python >= 3.12), scanpy
cpa       ``SCGMVAE_CPA_PYTHON``     ``cpa-tools`` (Python 3.9 or 3.10)
trvae     ``SCGMVAE_TRVAE_PYTHON``   ``scarches`` 0.6.1 (Python 3.11)
scpram    ``SCGMVAE_SCPRAM_PYTHON``  ``scpram`` 0.0.3 (Python 3.11)
========  =========================  =============================================

:func:`run_peer` writes the training and control cells to a temporary folder, runs the peer
script and reads its prediction back (log1p CP10k of the control cells' predicted stimulated
state). When the variable is unset, or its Python is missing or cannot import the peer,
:func:`run_peer` returns None and :func:`skip_message` says what to set.

    python benchmarks/_peers.py            # which peers are available
    python benchmarks/_peers.py --smoke    # run each available peer for 2 epochs on Kang B cells
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import anndata
import numpy as np
from scipy import sparse

PEERS_DIR = Path(__file__).resolve().parent / "peers"
# seconds to wait for a peer's Python to import its package (first imports of jax are slow)
PROBE_TIMEOUT = 300
# seconds one peer run may take before it is stopped
RUN_TIMEOUT = 4 * 3600


@dataclass(frozen=True)
class Peer:
    """A peer method: its script, the variable naming its Python, and what that Python needs."""

    script: str
    env_var: str
    module: str
    requirement: str
    label: str


PEERS = {
    "trvae": Peer(
        "trvae.py", "SCGMVAE_TRVAE_PYTHON", "scarches", "scarches (Python 3.11)", "trVAE"
    ),
    "scpram": Peer(
        "scpram.py", "SCGMVAE_SCPRAM_PYTHON", "scpram", "scpram (Python 3.11)", "scPRAM"
    ),
    "scgen": Peer(
        "scgen.py", "SCGMVAE_SCGEN_PYTHON", "pertpy", "pertpy[jax] (Python >= 3.12)", "scGen"
    ),
    "cpa": Peer("cpa.py", "SCGMVAE_CPA_PYTHON", "cpa", "cpa-tools (Python 3.10)", "CPA"),
}
"""The peers in the order they run: the strongest published on Kang (scPerturBench) first."""


def _peer(name: str) -> Peer:
    if name not in PEERS:
        raise ValueError(f"Unknown peer {name!r}; choose from {sorted(PEERS)}.")
    return PEERS[name]


@functools.cache
def _probe(python: str, module: str) -> str | None:
    """None when ``python`` imports ``module``; otherwise why not (one line)."""
    if not Path(python).is_file():
        return f"{python} does not exist"
    try:
        result = subprocess.run(
            [python, "-c", f"import {module}"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            cwd=tempfile.gettempdir(),  # not PEERS_DIR: its cpa.py would shadow cpa-tools
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{python} did not run: {error}"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no error message"])[-1]
        return f"{python} cannot import {module}: {last}"
    return None


def peer_python(name: str) -> str | None:
    """The Python that runs peer ``name``, or None when it is not set up."""
    peer = _peer(name)
    python = os.environ.get(peer.env_var)
    if not python or _probe(python, peer.module) is not None:
        return None
    return python


def peer_status() -> dict[str, str]:
    """For each peer, ``"available (<python>)"`` or why it would be skipped."""
    status = {}
    for name, peer in PEERS.items():
        python = os.environ.get(peer.env_var)
        problem = "not set" if not python else _probe(python, peer.module)
        if problem is None:
            status[name] = f"available ({python})"
        else:
            status[name] = f"unavailable: {peer.env_var} {problem}"
    return status


def skip_message(name: str) -> str:
    """The one line to print when peer ``name`` is skipped."""
    peer = _peer(name)
    python = os.environ.get(peer.env_var)
    why = "" if not python else f" ({_probe(python, peer.module)})"
    return (
        f"{peer.label} skipped: set {peer.env_var} to a Python with {peer.requirement} installed"
        f" (see benchmarks/peers/README.md){why}"
    )


def _minimal(adata: anndata.AnnData, keys: list[str]) -> anndata.AnnData:
    """Counts (CSR float32) and the obs columns the peer uses, as plain string categories.

    Plain contents keep the file readable by the peers' older anndata versions.
    """
    x = adata.X if sparse.issparse(adata.X) else sparse.csr_matrix(np.asarray(adata.X))
    out = anndata.AnnData(
        X=sparse.csr_matrix(x, dtype=np.float32),
        obs=adata.obs[keys].astype(str).astype("category"),
    )
    out.obs_names = [str(n) for n in adata.obs_names]
    out.var_names = [str(n) for n in adata.var_names]
    return out


def run_peer(
    name: str,
    train: anndata.AnnData,
    control: anndata.AnnData,
    *,
    seed: int = 0,
    max_epochs: int | None = None,
    batch_size: int | None = None,
    condition_key: str = "condition",
    ctrl: str = "control",
    stim: str = "stimulated",
    label_key: str = "cell_type",
    smoke: bool = False,
    extra_args: tuple[str, ...] = (),
    threads: int | None = None,
) -> anndata.AnnData | None:
    """Train peer ``name`` on ``train`` and predict the stimulated state of ``control``.

    Parameters
    ----------
    name
        ``"scgen"``, ``"cpa"``, ``"trvae"`` or ``"scpram"``.
    train
        Training cells with raw counts in ``.X`` and ``condition_key`` / ``label_key`` in obs.
    control
        Control cells to predict from (raw counts, same genes).
    seed
        Seed of the peer's training and prediction.
    max_epochs, batch_size
        Passed on when given; the peer script's defaults otherwise (scGen: 200 epochs of 32
        cells; CPA: its Kang tutorial's 2000 epochs of 512 cells with early stopping; trVAE:
        scArches' tutorial's 2000 epochs of 512 cells with early stopping; scPRAM: its Kang
        tutorial's 100 epochs of 128 cells).
    condition_key, ctrl, stim, label_key
        Where the condition and the cell type are, and the condition values.
    smoke
        Two epochs only: checks that the peer runs.
    extra_args
        Further command-line arguments of the peer script.
    threads
        CPU threads of the peer (default ``$SCGMVAE_THREADS`` or 1).

    Returns
    -------
    The predicted cells (control cells' ``obs``, the same ``var_names``, ``.X`` in log1p CP10k,
    ``.uns["peer"]`` with ``train_seconds`` and ``train_cpu_seconds`` of the training alone,
    ``wall_seconds`` of the whole run and the peer's library versions), or None
    when the peer's Python is not set up.

    Raises
    ------
    RuntimeError
        When the peer's Python is set up but the run fails (its error output is included).
    """
    peer = _peer(name)
    python = peer_python(name)
    if python is None:
        return None
    if threads is None:
        threads = int(os.environ.get("SCGMVAE_THREADS", "1"))
    keys = [condition_key, label_key]
    with tempfile.TemporaryDirectory(prefix=f"scgmvae-{name}-") as folder:
        folder = Path(folder)
        _minimal(train, keys).write_h5ad(folder / "train.h5ad")
        _minimal(control, keys).write_h5ad(folder / "control.h5ad")
        command = [
            python,
            str(PEERS_DIR / peer.script),
            *("--train", str(folder / "train.h5ad")),
            *("--control", str(folder / "control.h5ad")),
            *("--out", str(folder / "predicted.h5ad")),
            *("--condition-key", condition_key, "--ctrl", ctrl, "--stim", stim),
            *("--label-key", label_key, "--seed", str(seed), "--threads", str(threads)),
        ]
        if max_epochs is not None:
            command += ["--max-epochs", str(max_epochs)]
        if batch_size is not None:
            command += ["--batch-size", str(batch_size)]
        if smoke:
            command.append("--smoke")
        command += list(extra_args)
        start = time.perf_counter()
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=folder
        )
        wall = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(
                f"{peer.label} failed (exit {result.returncode}): {' '.join(command)}\n"
                + result.stderr[-3000:]
            )
        predicted = anndata.read_h5ad(folder / "predicted.h5ad")
    # compared as plain strings: a newer pandas in the peer's Python reads back another dtype
    same_genes = list(map(str, predicted.var_names)) == list(map(str, control.var_names))
    same_cells = list(map(str, predicted.obs_names)) == list(map(str, control.obs_names))
    if not (same_genes and same_cells):
        raise RuntimeError(f"{peer.label} returned cells or genes other than the control's.")
    # the caller's own obs and var (and index dtypes), so the prediction lines up with its data
    predicted.obs = control.obs.copy()
    predicted.var = control.var.copy()
    predicted.uns["peer"] = {**dict(predicted.uns.get("peer", {})), "wall_seconds": wall}
    return predicted


def _smoke() -> None:
    """Each available peer for two epochs on the Kang B cells; prints its scores."""
    from _common import kang

    import scgmvae

    adata = kang()
    held_out = (adata.obs["cell_type"] == "B") & (adata.obs["condition"] == "stimulated")
    train = adata[~held_out].copy()
    control = adata[(adata.obs["cell_type"] == "B") & (adata.obs["condition"] == "control")]
    stimulated = adata[held_out]
    for name in PEERS:
        predicted = run_peer(name, train, control.copy(), seed=0, smoke=True)
        if predicted is None:
            print(skip_message(name))
            continue
        scores = scgmvae.tl.evaluate_perturbation(predicted, stimulated, control)
        print(f"{PEERS[name].label}: {scores.loc['prediction'].round(3).to_dict()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="run each available peer briefly")
    args = parser.parse_args()
    for name, status in peer_status().items():
        print(f"{name}: {status}")
    if args.smoke:
        _smoke()


if __name__ == "__main__":
    main()
