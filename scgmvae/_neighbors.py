"""scanpy's neighbour graph, without its side effect on torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from anndata import AnnData


def neighbors(adata: AnnData, **kwargs: Any) -> None:
    """Run :func:`scanpy.pp.neighbors` on ``adata`` and keep torch's thread count.

    The neighbour search starts a parallel thread pool that resets torch's thread count to the
    number of cores, which would undo a user's ``torch.set_num_threads`` for the training that
    follows.
    """
    import scanpy as sc

    threads = torch.get_num_threads()
    try:
        sc.pp.neighbors(adata, **kwargs)
    finally:
        torch.set_num_threads(threads)
