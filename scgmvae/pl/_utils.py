"""What every plotting function does last: save, show or return, as ``scanpy.pl`` does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt

if TYPE_CHECKING:
    import os

    from matplotlib.figure import Figure

_SHOW_SAVE_PARAMETERS = """show
        Show the figure (``plt.show()``) and return nothing. By default the figure is shown
        unless ``ax`` was given or ``return_fig`` is set, as in ``scanpy.pl``.
    save
        Write the figure to this file (the format follows the suffix, e.g. ``.png``).
    return_fig
        Return the :class:`~matplotlib.figure.Figure` instead of the axes."""


def document_show_save(function):
    """Fill ``{show_save}`` in a plotting function's docstring with the shared parameters."""
    function.__doc__ = function.__doc__.replace("{show_save}", _SHOW_SAVE_PARAMETERS)
    return function


def finish(
    fig: Figure,
    axes: Any,
    *,
    show: bool | None,
    save: str | os.PathLike | None,
    return_fig: bool | None,
    ax_given: bool = False,
) -> Any:
    """Save the figure, then show it, or return the figure or the axes.

    Returns
    -------
    ``fig`` with ``return_fig``; nothing when the figure is shown; ``axes`` otherwise.
    """
    if save is not None:
        fig.savefig(save, bbox_inches="tight")
    if return_fig:
        return fig
    if show is None:
        show = not ax_given
    if show:
        plt.show()
        return None
    return axes
