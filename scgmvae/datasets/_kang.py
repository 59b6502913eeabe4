from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

import anndata as ad
import pandas as pd
import pooch

from scgmvae._validation import is_counts

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
    # the explicit path first, then $SCGMVAE_DATA_DIR, then the user cache
    directory = path or os.environ.get(DATA_DIR_ENV) or pooch.os_cache("scgmvae")
    file = _file_in(directory, KANG_FILE)
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
    """Load the embedded subset of the Kang et al. 2018 data: 832 PBMCs, raw counts, six types.

    The subset ships inside the package (``kang_ifnb_832.h5ad``, 832 cells × 14,053 genes,
    control and IFN-beta stimulated cells of six cell types, about 1.8 MB), so it loads offline
    with no argument, like :func:`scanpy.datasets.pbmc68k_reduced`. It is a public subset of the
    IFN-beta stimulation experiment of Kang et al. 2018, *Nature Biotechnology* 36:89–94 (GEO
    GSE96583), as distributed in the Seurat ``ifnb`` data. Use :func:`kang` for the full data.

    Parameters
    ----------
    path
        Read this file (or ``kang_ifnb_832.h5ad`` in this directory) instead of the embedded
        copy.

    Returns
    -------
    AnnData with raw UMI counts in ``.X``, ``obs["condition"]`` categorical in {``"control"``,
    ``"stimulated"``} and ``obs["cell_type"]`` categorical (B, CD14 Mono, CD16 Mono,
    CD4 Memory T, CD4 Naive T, CD8 T), normalised as in :func:`kang`.

    Raises
    ------
    FileNotFoundError
        If ``path`` is given and holds no such file.
    """
    if path is None:
        with resources.as_file(resources.files(__package__) / "data" / KANG_SUBSET_FILE) as file:
            return _read_kang_file(file)
    file = _file_in(path, KANG_SUBSET_FILE)
    if not file.is_file():
        raise FileNotFoundError(
            f"{KANG_SUBSET_FILE} was not found at {file}. Call kang_subset() without an "
            "argument to load the copy that ships with scgmvae."
        )
    return _read_kang_file(file)


def _file_in(path: str | os.PathLike, fname: str) -> Path:
    """``path`` itself when it is a file, else ``fname`` in the directory ``path``."""
    path = Path(path).expanduser().resolve()
    return path if path.is_file() else path / fname


def _read_kang_file(file: Path) -> ad.AnnData:
    """Read a Kang h5ad file and bring ``.X`` and ``.obs`` to the scgmvae conventions."""
    logger.info("Reading %s.", file)
    adata = ad.read_h5ad(file)
    if "counts" in adata.layers:
        adata.X = adata.layers["counts"].copy()
    if not is_counts(adata.X):
        logger.warning(
            "The count matrix of %s has negative or non-integer values, so it does not look like "
            "raw counts; count likelihoods will reject it.",
            file,
        )

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
