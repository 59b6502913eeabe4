"""Random numbers that follow ``scvi.settings.seed`` when it is set, and work when it is not."""

from __future__ import annotations

import torch
from scvi import settings


def seeded_generator() -> torch.Generator | None:
    """A torch generator seeded with ``scvi.settings.seed``; `None` when no seed is set.

    `None` makes torch's sampling functions draw from its global generator, as everywhere else
    in a session where the user set no seed, so a call works the same with and without one.
    """
    if settings.seed is None:
        return None
    return torch.Generator().manual_seed(settings.seed)
