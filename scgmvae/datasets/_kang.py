from __future__ import annotations

import logging
import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pooch
from scipy import sparse

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "SCGMVAE_DATA_DIR"
KANG_URL = "https://exampledata.scverse.org/pertpy/kang_2018.h5ad"
KANG_FILE = "kang_2018.h5ad"
KANG_SUBSET_FILE = "kang_ifnb_832.h5ad"

# pertpy's file calls the conditions "ctrl"/"stim" in obs["label"].
_LABEL_TO_CONDITION = {"ctrl": "control", "stim": "stimulated"}
_CONDITIONS = ("control", "stimulated")


def kang(path: str | os.PathLike | None = None, *, download: bool = True) -> ad.AnnData:
    """Load the Kang et al. 2018 IFN-beta stimulated PBMCs, the full data set with raw counts.

    About 24.7k peripheral blood mononuclear cells from lupus patients, half of them stimulated
    with interferon beta (Kang et al. 2018, *Nature Biotechnology* 36:89–94, GEO GSE96583). This
    is the public file that pertpy uses,
    ``kang_2018.h5ad`` from https://exampledata.scverse.org/pertpy/kang_2018.h5ad.

    The file is looked for in, in order: ``path``, the directory named by the environment
    variable ``SCGMVAE_DATA_DIR``, and the user cache directory
    ``pooch.os_cache("scgmvae")``. When it is already there it is read without any network
    access; otherwise it is downloaded into that directory with :func:`pooch.retrieve`. No
    checksum is pinned (``known_hash=None``), because the host publishes none: pooch logs the
    SHA256 of the downloaded file so you can compare it with a trusted copy.

    Parameters
    ----------
    path
        Directory that holds (or will cache) ``kang_2018.h5ad``, or the path of the file itself.
    download
        Whether to download the file when it is not found. With `False`, a missing file raises
        :class:`FileNotFoundError`.

    Returns
    -------
    AnnData with raw UMI counts in ``.X`` (taken from ``.layers["counts"]`` when present),
    ``obs["condition"]`` categorical in {``"control"``, ``"stimulated"``} (mapped from
    ``obs["label"]``: ctrl → control, stim → stimulated) and ``obs["cell_type"]`` categorical;
    ``obs["replicate"]`` and the file's other columns are kept. The file on disk is not changed.

    Raises
    ------
    FileNotFoundError
        If the file is missing and ``download`` is `False`.
    RuntimeError
        If the download fails.
    """
    file = _resolve_file(path, KANG_FILE, default_dir=Path(pooch.os_cache("scgmvae")))
    if not file.is_file():
        how_to_fix = (
            f"Place {KANG_FILE} (downloaded from {KANG_URL}) in {file.parent}, or set "
            f"{DATA_DIR_ENV} (or pass `path`) to a directory that holds it."
        )
        if not download:
            raise FileNotFoundError(
                f"{KANG_FILE} was not found in {file.parent} and download=False. {how_to_fix}"
            )
        logger.info("Downloading %s from %s into %s.", KANG_FILE, KANG_URL, file.parent)
        try:
            pooch.retrieve(
                KANG_URL, known_hash=None, fname=file.name, path=file.parent, progressbar=True
            )
        except Exception as err:  # network, HTTP or file system errors all mean the same here
            raise RuntimeError(
                f"Could not download {KANG_FILE} from {KANG_URL} into {file.parent}: {err}. "
                f"{how_to_fix}"
            ) from err
    return _read_kang_file(file)


def kang_subset(path: str | os.PathLike | None = None) -> ad.AnnData:
    """Load a small subset of the Kang et al. 2018 data: 832 PBMCs, raw counts, six cell types.

    The subset (``kang_ifnb_832.h5ad``, 832 cells × 14,053 genes, control and IFN-beta
    stimulated) is not published at a URL, so it is never downloaded: it is read from ``path`` or
    from the directory named by the environment variable ``SCGMVAE_DATA_DIR``. Use :func:`kang`
    for the full public data.

    Parameters
    ----------
    path
        Directory that holds ``kang_ifnb_832.h5ad``, or the path of the file itself.

    Returns
    -------
    AnnData with raw UMI counts in ``.X``, ``obs["condition"]`` categorical in {``"control"``,
    ``"stimulated"``} and ``obs["cell_type"]`` categorical, normalised as in :func:`kang`.

    Raises
    ------
    FileNotFoundError
        If the file is not found, or neither ``path`` nor ``SCGMVAE_DATA_DIR`` is given.
    """
    file = _resolve_file(path, KANG_SUBSET_FILE, default_dir=None)
    if file is None:
        raise FileNotFoundError(
            f"{KANG_SUBSET_FILE} is not downloadable; tell scgmvae where it is by passing `path` "
            f"or setting the environment variable {DATA_DIR_ENV} to the directory that holds it."
        )
    if not file.is_file():
        raise FileNotFoundError(
            f"{KANG_SUBSET_FILE} was not found in {file.parent}. Place the file there, or set "
            f"{DATA_DIR_ENV} (or pass `path`) to the directory that holds it. For the full public "
            f"Kang data use scgmvae.datasets.kang(), which downloads {KANG_URL}."
        )
    return _read_kang_file(file)


def _resolve_file(
    path: str | os.PathLike | None, fname: str, default_dir: Path | None
) -> Path | None:
    """Locate ``fname`` from ``path``, then ``$SCGMVAE_DATA_DIR``, then ``default_dir``."""
    if path is None:
        env = os.environ.get(DATA_DIR_ENV)
        if env:
            path = env
        elif default_dir is None:
            return None
        else:
            path = default_dir
    path = Path(path).expanduser().resolve()
    # A path to the file itself is accepted too, not only its directory.
    return path if path.is_file() else path / fname


def _read_kang_file(file: Path) -> ad.AnnData:
    """Read a Kang h5ad file and bring ``.X`` and ``.obs`` to the scgmvae conventions."""
    logger.info("Reading %s.", file)
    adata = ad.read_h5ad(file)
    if "counts" in adata.layers:
        adata.X = adata.layers["counts"].copy()
    _warn_if_not_counts(adata.X, file)

    obs = adata.obs
    if "condition" in obs and set(obs["condition"].astype(str).unique()) <= set(_CONDITIONS):
        condition = obs["condition"].astype(str)
    elif "label" in obs:
        labels = obs["label"].astype(str)
        unknown = sorted(set(labels.unique()) - set(_LABEL_TO_CONDITION))
        if unknown:
            raise ValueError(
                f"obs['label'] of {file} has values {unknown}; expected only "
                f"{sorted(_LABEL_TO_CONDITION)}. Is this the Kang 2018 file?"
            )
        if "condition" in obs:
            logger.warning("Replacing obs['condition'] of %s by one mapped from 'label'.", file)
        condition = labels.map(_LABEL_TO_CONDITION)
    else:
        raise ValueError(
            f"{file} has neither obs['condition'] with values {list(_CONDITIONS)} nor obs['label']"
            " with values ctrl/stim. Is this the Kang 2018 file?"
        )
    obs["condition"] = pd.Categorical(condition, categories=list(_CONDITIONS))
    if "cell_type" not in obs:
        raise ValueError(f"{file} has no obs['cell_type']. Is this the Kang 2018 file?")
    for key in ("cell_type", "replicate"):
        if key in obs:
            obs[key] = obs[key].astype("category")
    return adata


def _warn_if_not_counts(x: np.ndarray | sparse.spmatrix, file: Path) -> None:
    """Log a warning when ``x`` is not non-negative and integer-valued."""
    values = x.data if sparse.issparse(x) else np.asarray(x)
    if values.size and (values.min() < 0 or not np.all(np.equal(np.mod(values, 1), 0))):
        logger.warning(
            "The count matrix of %s has negative or non-integer values, so it does not look like "
            "raw counts; count likelihoods will reject it.",
            file,
        )
