"""Checks on user input that fail loudly, with the problem and the fix in the message."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scgmvae.module._constants import COUNT_LIKELIHOODS

_CHUNK_ROWS = 10_000


def _matrix(adata: AnnData, layer: str | None):
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(
            f"Layer {layer!r} is not in adata.layers (available: {list(adata.layers)}); "
            "pass an existing layer, or layer=None to use adata.X."
        )
    return adata.layers[layer]


def _row_chunks(matrix) -> Iterator[np.ndarray | sparse.spmatrix]:
    """In-memory row chunks, so sparse and backed matrices are never densified whole."""
    n_rows = matrix.shape[0]
    for start in range(0, n_rows, _CHUNK_ROWS):
        chunk = matrix[start : start + _CHUNK_ROWS]
        # anndata's backed sparse datasets load with to_memory()
        yield chunk.to_memory() if hasattr(chunk, "to_memory") else chunk


def _value_chunks(matrix) -> Iterator[np.ndarray]:
    """Stored values in row chunks."""
    for chunk in _row_chunks(matrix):
        yield np.asarray(chunk.data) if sparse.issparse(chunk) else np.asarray(chunk).ravel()


def row_sums(matrix) -> np.ndarray:
    """Per-row totals of a dense, sparse or backed matrix, computed chunk by chunk."""
    return np.concatenate([np.asarray(chunk.sum(axis=1)).ravel() for chunk in _row_chunks(matrix)])


def is_counts(matrix) -> bool:
    """Whether a (dense, sparse or backed) matrix holds non-negative integers only."""
    for values in _value_chunks(matrix):
        if values.size and (values.min() < 0 or np.any(values != np.round(values))):
            return False
    return True


def check_obs_key(adata: AnnData, key: str | None, what: str) -> None:
    """Raise a clear error when ``key`` is not a column of ``adata.obs``."""
    if key is not None and key not in adata.obs.columns:
        raise KeyError(
            f"{what} key {key!r} is not a column of adata.obs (columns: "
            f"{list(adata.obs.columns)}); pass the name of an existing column."
        )


def check_not_empty(adata: AnnData) -> None:
    """Raise when ``adata`` has no cells or no genes."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(
            f"The AnnData is empty ({adata.n_obs} cells x {adata.n_vars} genes); "
            "subset it to a non-empty selection before setting it up."
        )


def check_categorical_column(
    adata: AnnData, key: str | None, what: str, ignore: Sequence[str] = ()
) -> None:
    """Raise when ``key`` is missing, has missing values or declares categories without cells."""
    if key is None:
        return
    check_obs_key(adata, key, what)
    column = adata.obs[key]
    n_missing = int(column.isna().sum())
    if n_missing:
        raise ValueError(
            f"{what} column {key!r} has {n_missing} missing values (NaN); give every cell a "
            f"value, e.g. adata.obs[{key!r}] = adata.obs[{key!r}].astype(str) keeps them as "
            "the category 'nan', or drop those cells."
        )
    if not isinstance(column.dtype, pd.CategoricalDtype):
        return
    counts = column.value_counts()
    empty = [c for c in column.cat.categories if counts.get(c, 0) == 0 and c not in ignore]
    if empty:
        raise ValueError(
            f"{what} column {key!r} has categories with no cells: {empty}; drop them with "
            f"adata.obs[{key!r}] = adata.obs[{key!r}].cat.remove_unused_categories()."
        )


def check_labels_column(adata: AnnData, key: str | None, unlabeled_category: str) -> None:
    """Raise on a labels column that scvi-tools would fail on with a confusing message.

    Missing values (they must be the unlabelled category), and label codes of another type
    than the unlabelled category (integer codes with a string ``unlabeled_category``).
    """
    if key is None:
        return
    check_obs_key(adata, key, "Labels")
    column = adata.obs[key]
    n_missing = int(column.isna().sum())
    if n_missing:
        raise ValueError(
            f"Labels column {key!r} has {n_missing} missing values (NaN). Mark unlabelled cells "
            f"with the unlabelled category instead: adata.obs[{key!r}] = "
            f"adata.obs[{key!r}].astype(object).fillna({unlabeled_category!r})."
        )
    values = column.cat.categories if isinstance(column.dtype, pd.CategoricalDtype) else column
    kinds = {type(v) for v in pd.unique(np.asarray(values, dtype=object))}
    names = isinstance(unlabeled_category, str)
    if any(issubclass(kind, str) != names for kind in kinds):
        raise TypeError(
            f"Labels column {key!r} holds non-string codes ({sorted(k.__name__ for k in kinds)})"
            f" while unlabeled_category is {unlabeled_category!r}; use label names, e.g. "
            f"adata.obs[{key!r}] = adata.obs[{key!r}].astype(str), and mark unlabelled cells "
            f"with {unlabeled_category!r}."
        )
    check_categorical_column(adata, key, "Labels", ignore=[unlabeled_category])


def check_continuous_column(adata: AnnData, key: str) -> None:
    """Raise when a continuous covariate is missing, not numeric or not finite."""
    check_obs_key(adata, key, "Continuous covariate")
    column = adata.obs[key]
    if not pd.api.types.is_numeric_dtype(column):
        raise TypeError(
            f"Continuous covariate {key!r} has dtype {column.dtype}; pass a numeric column (or "
            "register a categorical column with categorical_covariate_keys)."
        )
    if not np.all(np.isfinite(column.to_numpy(dtype=float))):
        raise ValueError(f"Continuous covariate {key!r} has NaN or infinite values.")


def check_values(adata: AnnData, layer: str | None, gene_likelihood: str) -> None:
    """Check the data matrix against the likelihood that will model it.

    Raises on NaN/inf, float16, negative or non-integer values for count likelihoods and
    values outside [0, 1] for the Bernoulli likelihood.
    """
    matrix = _matrix(adata, layer)
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    if np.dtype(matrix.dtype) == np.float16:
        raise TypeError(
            f"{where} is float16, which loses precision in training; convert it first, e.g. "
            f"{where} = {where}.astype('float32')."
        )
    counts = gene_likelihood in COUNT_LIKELIHOODS
    for values in _value_chunks(matrix):
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"{where} contains NaN or infinite values; remove or impute them (e.g. "
                "np.nan_to_num) before training."
            )
        if counts and values.size and values.min() < 0:
            raise ValueError(
                f"{where} has negative values, but gene_likelihood={gene_likelihood!r} models "
                "counts; pass raw counts (layer=...) or use gene_likelihood='normal' for "
                "scaled data."
            )
        if counts and np.any(values != np.round(values)):
            raise ValueError(
                f"{where} has non-integer values, but gene_likelihood={gene_likelihood!r} "
                "models raw counts. Set the model up with the layer that holds the raw counts "
                "(setup_anndata(adata, layer='counts')), or model normalised data with "
                "gene_likelihood='normal'."
            )
        if (
            gene_likelihood == "bernoulli"
            and values.size
            and (values.min() < 0 or values.max() > 1)
        ):
            raise ValueError(
                f"{where} has values outside [0, 1], which gene_likelihood='bernoulli' needs; "
                "rescale the data or choose another likelihood."
            )


def check_var_names(adata: AnnData, registered: Sequence[str]) -> None:
    """Raise when the genes of ``adata`` are not the registered ones, in the same order."""
    names = adata.var_names
    if len(names) == len(registered) and np.array_equal(np.asarray(names), np.asarray(registered)):
        return
    missing = pd.Index(registered).difference(names)
    extra = names.difference(pd.Index(registered))
    detail = (
        f"{len(missing)} registered genes missing (e.g. {list(missing[:3])}), "
        f"{len(extra)} unknown genes (e.g. {list(extra[:3])})"
        if len(missing) or len(extra)
        else "same genes in a different order"
    )
    raise ValueError(
        f"The genes of this AnnData differ from the {len(registered)} the model was trained on "
        f"({detail}); subset and order them with adata[:, model.adata.var_names] or "
        "adata[:, registered_var_names]."
    )
