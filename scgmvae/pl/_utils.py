"""Helpers shared by the plotting functions."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import os

    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


def save_figure(fig: Figure, save: str | os.PathLike | None) -> None:
    """Write ``fig`` to ``save`` (format from the suffix) unless ``save`` is None."""
    if save is None:
        return
    fig.savefig(save, bbox_inches="tight")
    logger.info("Saved the figure to %s.", save)
