"""Differential expression from a model, stored where scanpy looks for marker genes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

    from scgmvae.model import BaseGMVAE

DEFAULT_KEY = "rank_genes_groups_scgmvae"


def rank_genes_groups(
    model: BaseGMVAE,
    groupby: str,
    adata: AnnData | None = None,
    groups: Sequence[str] | None = None,
    reference: str = "rest",
    mode: Literal["vanilla", "change"] = "vanilla",
    key_added: str = DEFAULT_KEY,
    **de_kwargs,
) -> pd.DataFrame:
    """Marker genes of each group from :meth:`~scgmvae.model.GMVAE.differential_expression`.

    Each group of ``adata.obs[groupby]`` (e.g. ``"scgmvae_component"`` after
    :func:`scgmvae.tl.embed`, or a cell-type column) is compared with the rest of the cells, or
    with ``reference``, by the model's Bayes factors. The result goes to
    ``adata.uns[key_added]`` in the layout of :func:`scanpy.tl.rank_genes_groups`, so
    ``sc.pl.rank_genes_groups(adata, key=key_added)`` and
    ``sc.get.rank_genes_groups_df(adata, group, key=key_added)`` work as usual: genes sorted
    by ``scores`` (the Bayes factor of "higher in the group" in ``"vanilla"`` mode; in
    ``"change"`` mode the Bayes factor of a change, signed by its direction), so that genes up
    in the group come first, with ``logfoldchanges`` (log2 fold-change of the decoded
    expression). ``pvals`` and ``pvals_adj`` hold Bayesian counterparts, not p-values: the
    posterior probability that the gene is not up in the group (not changed, in ``"change"``
    mode), and the expected false discovery rate of calling all genes ranked down to it.

    Parameters
    ----------
    model
        A trained GMVAE or CGMVAE with a count likelihood.
    groupby
        Column of ``adata.obs`` with the groups.
    adata
        Cells with the registered genes; the model's own by default.
    groups
        Groups to test; all by default.
    reference
        ``"rest"`` or a group to compare every other group with.
    mode
        ``"vanilla"`` or ``"change"`` (see ``differential_expression``).
    key_added
        Key of ``adata.uns`` to write.
    **de_kwargs
        Passed to ``model.differential_expression``.

    Returns
    -------
    The full DE table (one row per gene and group, with a ``group`` column).
    """
    adata = model.adata if adata is None else adata
    if groupby not in adata.obs:
        raise KeyError(f"{groupby!r} is not a column of adata.obs; pass a column of groups.")
    categories = adata.obs[groupby].astype("category").cat.categories
    groups = [str(g) for g in (categories if groups is None else groups)]
    tables = {}
    for group in groups:
        if group == reference:
            continue
        table = model.differential_expression(
            adata,
            groupby=groupby,
            group1=group,
            group2=None if reference == "rest" else reference,
            mode=mode,
            **de_kwargs,
        )
        if "lfc_mean" not in table:  # vanilla mode: the Bayes factor is already signed
            table["lfc_mean"] = np.log2(table["scale1"]) - np.log2(table["scale2"])
        direction = np.sign(table["lfc_mean"]) if mode == "change" else 1.0
        table["scores"] = table["bayes_factor"] * direction
        table = table.sort_values("scores", ascending=False)
        # posterior probability that the gene is not up (vanilla) or not changed (change)
        table["pvals"] = table["proba_m2"] if mode == "vanilla" else 1 - table["proba_de"]
        # the expected false discovery rate of calling every gene down to this one
        table["pvals_adj"] = table["pvals"].cumsum() / np.arange(1, len(table) + 1)
        tables[group] = table
    adata.uns[key_added] = _scanpy_layout(tables, groupby, reference, mode)
    return pd.concat(
        [table.assign(group=group) for group, table in tables.items()], axis=0
    ).rename_axis("gene")


def _scanpy_layout(
    tables: dict[str, pd.DataFrame], groupby: str, reference: str, mode: str
) -> dict:
    """The record arrays of :func:`scanpy.tl.rank_genes_groups`, one field per group."""
    fields = {
        "names": "index",
        "scores": "scores",
        "logfoldchanges": "lfc_mean",
        "pvals": "pvals",
        "pvals_adj": "pvals_adj",
    }
    result = {
        "params": {
            "groupby": groupby,
            "reference": reference,
            "method": f"scgmvae_{mode}",
            "use_raw": False,
            "layer": None,
        }
    }
    for field, column in fields.items():
        values = {
            group: (table.index.to_numpy() if column == "index" else table[column].to_numpy())
            for group, table in tables.items()
        }
        dtype = [(group, "O" if field == "names" else "float32") for group in values]
        result[field] = np.rec.fromarrays(list(values.values()), dtype=dtype)
    return result
