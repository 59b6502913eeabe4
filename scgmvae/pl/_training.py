"""Training curves of the loss terms."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from ._utils import document_show_save, finish

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from scgmvae.model import BaseGMVAE

logger = logging.getLogger(__name__)

MAX_COLUMNS = 3


@document_show_save
def loss_history(
    model: BaseGMVAE,
    terms: Sequence[str] = ("reconstruction", "kl_z", "kl_w", "kl_y", "kl_d", "classification"),
    show: bool | None = None,
    save: str | os.PathLike | None = None,
    return_fig: bool | None = None,
) -> list[Axes] | Figure | None:
    """Per-epoch training (and validation) curves of the loss terms, one panel each.

    Parameters
    ----------
    model
        A trained model; its ``history`` holds ``<term>_train`` and, with a validation set,
        ``<term>_validation``.
    terms
        Logged terms to plot; terms missing from the history are skipped with a warning
        (``"elbo"`` works as well).
    {show_save}

    Returns
    -------
    The axes, one per term (or the figure with ``return_fig``), unless the figure is shown.
    """
    history = model.history or {}
    found = []
    for term in terms:
        if f"{term}_train" in history:
            found.append(term)
        else:
            logger.warning("Skipping %r: model.history has no %r.", term, f"{term}_train")
    if not found:
        raise ValueError(
            f"model.history has none of the terms {list(terms)}; train the model first."
        )
    n_cols = min(MAX_COLUMNS, len(found))
    n_rows = math.ceil(len(found) / n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(3.2 * n_cols, 2.6 * n_rows), squeeze=False, layout="constrained"
    )
    for ax, term in zip(axes.flat, found, strict=False):
        for split in ("train", "validation"):
            key = f"{term}_{split}"
            if key in history:
                curve = history[key]
                ax.plot(curve.index, np.asarray(curve, dtype=float).ravel(), label=split)
        ax.set_title(term)
        ax.set_xlabel("epoch")
        if f"{term}_validation" in history:
            ax.legend(frameon=False, fontsize=8)
    for ax in axes.flat[len(found) :]:
        ax.remove()
    return finish(fig, list(axes.flat[: len(found)]), show=show, save=save, return_fig=return_fig)
