"""Quantile maps: describe a group's expression by quantile functions and move cells along them."""

from __future__ import annotations

import torch

N_QUANTILES = 100
"""Levels of the quantile functions that describe a component's expression distribution."""
QUANTILE_CHUNK = 32
"""Cells moved at a time (memory: cells x levels x genes)."""


def quantile_levels() -> torch.Tensor:
    """The ``N_QUANTILES`` levels of the quantile functions, the midpoints of equal bins."""
    return (torch.arange(N_QUANTILES, dtype=torch.float) + 0.5) / N_QUANTILES


def quantile_function(values: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Quantiles of each column of ``values`` at ``levels``, interpolated linearly."""
    ordered = values.sort(dim=0).values
    position = levels * (len(values) - 1)
    below = position.floor().long()
    above = (below + 1).clamp(max=len(values) - 1)
    fraction = (position - below)[:, None]
    return ordered[below] * (1 - fraction) + ordered[above] * fraction


def tie_fractions(values: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Where each cell sits among the cells that share its value, gene by gene, in (0, 1).

    The ``n`` cells tied at a value take the fractions ``(i + 0.5) / n``, ``i = 0 .. n - 1``,
    in random order: evenly spread rather than drawn one by one, so the tie's cells cover its
    levels without the sampling noise of independent draws. A value no other cell shares
    gets 0.5.
    """
    n_cells = values.shape[0]
    shuffled = torch.argsort(torch.rand(values.shape, generator=generator), dim=0)
    # a stable sort of the shuffled cells by value keeps the random order within ties
    by_value = torch.sort(values.gather(0, shuffled), dim=0, stable=True).indices
    order = shuffled.gather(0, by_value)
    ordered = values.gather(0, order)
    position = torch.arange(n_cells, device=values.device)[:, None].expand_as(ordered)
    starts_tie = torch.ones_like(ordered, dtype=torch.bool)
    starts_tie[1:] = ordered[1:] != ordered[:-1]
    ends_tie = torch.ones_like(starts_tie)
    ends_tie[:-1] = starts_tie[1:]
    first = torch.where(starts_tie, position, 0).cummax(0).values
    last = torch.where(ends_tie, position, n_cells).flip(0).cummin(0).values.flip(0)
    fractions = ((position - first).float() + 0.5) / (last - first + 1).float()
    return torch.empty_like(values).scatter_(0, order, fractions)


def move_by_quantiles(
    expression: torch.Tensor,
    group: torch.Tensor,
    source: torch.Tensor,
    responses: torch.Tensor,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Each cell's expression moved, gene by gene, by its group's response at the cell's level.

    A cell's level in a gene is where its value falls in its group's source quantile
    function; it moves by the group's response (the change of the quantile function between
    two conditions) at that level, interpolated between the levels. Cells of a group tied at
    one value (e.g. the zeros) take evenly spread levels of the tie (:func:`tie_fractions`),
    so together they take the response's mean over the tie.

    Parameters
    ----------
    expression
        The cells' values, of shape ``(n_cells, n_genes)``.
    group
        Each cell's group (a component or a cell type), an index into ``source``.
    source, responses
        Each group's quantile function under the cells' condition and its response, both of
        shape ``(n_groups, N_QUANTILES, n_genes)``.
    generator
        Random order of the tied cells.

    Returns
    -------
    The moved values, of the shape of ``expression``.
    """
    ties = torch.empty_like(expression)
    for k in group.unique():
        members = group == k
        ties[members] = tie_fractions(expression[members], generator)
    moved = torch.empty_like(expression)
    for chunk in torch.arange(len(expression), device=expression.device).split(QUANTILE_CHUNK):
        x = expression[chunk]
        reference = source[group[chunk]]  # (cells, levels, genes)
        below = (reference < x[:, None]).sum(1)
        up_to = (reference <= x[:, None]).sum(1)
        level = (below + ties[chunk] * (up_to - below) - 0.5).clamp(0, N_QUANTILES - 1)
        lower = level.floor().long()
        upper = (lower + 1).clamp(max=N_QUANTILES - 1)
        fraction = level - lower
        response = responses[group[chunk]]
        step = (
            response.gather(1, lower[:, None]).squeeze(1) * (1 - fraction)
            + response.gather(1, upper[:, None]).squeeze(1) * fraction
        )
        moved[chunk] = x + step
    return moved
