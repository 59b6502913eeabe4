"""Quantile maps: tie levels and moving cells along a group's quantile response."""

import numpy as np
import torch

from scgmvae.model.base._quantiles import (
    move_by_quantiles,
    quantile_function,
    quantile_levels,
    tie_fractions,
)


def test_tie_fractions_spread_ties_evenly():
    """Cells sharing a value in a gene take (i + 0.5) / n in random order; others take 0.5."""
    values = torch.tensor([[0.0, 1.0], [0.0, 2.0], [3.0, 1.0], [0.0, 1.0], [0.0, 5.0]])
    fractions = tie_fractions(values, torch.Generator().manual_seed(0))
    zeros = values[:, 0] == 0
    np.testing.assert_allclose(sorted(fractions[zeros, 0].tolist()), [0.125, 0.375, 0.625, 0.875])
    assert fractions[~zeros, 0].tolist() == [0.5]
    ones = values[:, 1] == 1
    np.testing.assert_allclose(sorted(fractions[ones, 1].tolist()), [1 / 6, 0.5, 5 / 6])
    assert fractions[~ones, 1].tolist() == [0.5, 0.5]
    again = tie_fractions(values, torch.Generator().manual_seed(0))
    assert torch.equal(again, fractions)
    orders = {
        tuple(tie_fractions(values, torch.Generator().manual_seed(seed))[zeros, 0].tolist())
        for seed in range(10)
    }
    assert len(orders) > 1  # the order within a tie comes from the generator


def test_move_by_quantiles_maps_a_group_onto_its_target_distribution():
    """Moved by the quantile response, a group's cells take on the target distribution."""
    rng = np.random.default_rng(0)
    n_cells = 2000
    # gene 0: a shift and a stretch; gene 1: most cells at zero, the rest move up
    source_cells = np.stack(
        [rng.normal(1.0, 0.5, n_cells), np.where(rng.random(n_cells) < 0.6, 0.0, 1.0)], 1
    )
    target_cells = np.stack(
        [rng.normal(3.0, 1.0, n_cells), np.where(rng.random(n_cells) < 0.3, 0.0, 2.0)], 1
    )
    source_x, target_x = (torch.tensor(x, dtype=torch.float) for x in (source_cells, target_cells))
    levels = quantile_levels()
    source = quantile_function(source_x, levels)[None]
    responses = quantile_function(target_x, levels)[None] - source
    # a second group that does not move, to check that each cell takes its own group's response
    source = torch.cat([source, source])
    responses = torch.cat([responses, torch.zeros_like(responses)])
    group = torch.tensor([0] * (n_cells // 2) + [1] * (n_cells // 2))
    moved = move_by_quantiles(source_x, group, source, responses, torch.Generator().manual_seed(0))
    first, second = moved[group == 0].numpy(), moved[group == 1].numpy()
    assert abs(first[:, 0].mean() - 3.0) < 0.1
    assert abs(first[:, 0].std() - 1.0) < 0.1
    # tied zeros spread over the levels of the tie: half of the source zeros stay at zero
    was_zero = source_cells[: n_cells // 2, 1] == 0
    np.testing.assert_allclose((first[was_zero, 1] < 0.5).mean(), 0.5, atol=0.05)
    np.testing.assert_allclose(np.median(first[~was_zero, 1]), 2.0, atol=0.05)
    np.testing.assert_array_equal(second, source_cells[n_cells // 2 :].astype(np.float32))
