"""Data splitter that can repeat the labelled cells of semi-supervised training."""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
from scvi import REGISTRY_KEYS, settings
from scvi.data._constants import _SETUP_ARGS_KEY
from scvi.dataloaders import DataSplitter

logger = logging.getLogger(__name__)

AUTO_LABELLED_SHARE = 0.25
"""Share of labelled cells that ``labelled_share="auto"`` rebalances to."""
MIN_LABELLED_PER_BATCH = 2.0
"""``"auto"`` rebalances when fewer labelled cells than this fall in a minibatch on average."""


class GMVAEDataSplitter(DataSplitter):
    """scvi-tools' :class:`~scvi.dataloaders.DataSplitter` with rebalanced labelled cells.

    With ``labelled_share``, the training loader repeats every labelled training cell the same
    number of times, so that labelled cells make up at least that share of an epoch (and, on
    average, of each minibatch); unlabelled cells are seen once per epoch as usual. With very
    few labels (1% of the cells: about one per minibatch of 128, and a quarter of the
    minibatches without any) this keeps the components anchored to their labels, as scANVI
    does by adding labelled cells to every minibatch.

    Parameters
    ----------
    adata_manager
        The model's :class:`~scvi.data.AnnDataManager`.
    labelled_share
        Minimum share of labelled cells in the training epochs, in ``(0, 1)``; ``None`` samples
        every cell once; ``"auto"`` rebalances to 0.25 when labelled and unlabelled cells are
        mixed and fewer than two labelled cells fall in a minibatch on average, and samples
        every cell once otherwise.
    **kwargs
        Passed to :class:`~scvi.dataloaders.DataSplitter`.
    """

    def __init__(
        self,
        adata_manager,
        labelled_share: float | Literal["auto"] | None = "auto",
        **kwargs,
    ):
        super().__init__(adata_manager, **kwargs)
        if labelled_share not in (None, "auto") and not 0 < labelled_share < 1:
            raise ValueError(
                f"labelled_share must be in (0, 1), 'auto' or None, got {labelled_share!r}."
            )
        self.labelled_share = labelled_share
        if labelled_share not in (None, "auto"):
            # fail before training starts, not when Lightning asks for the first loader
            labelled = self._labelled(np.arange(adata_manager.adata.n_obs))
            if labelled is None or not labelled.any():
                raise ValueError(
                    f"labelled_share={labelled_share} needs labelled cells: set the model up "
                    "with labels_key= a column whose unlabelled cells are marked with "
                    "unlabeled_category."
                )

    def _labelled(self, indices: np.ndarray) -> np.ndarray | None:
        """Which of the cells at ``indices`` carry a label; ``None`` without labels."""
        if self.adata_manager.registry[_SETUP_ARGS_KEY].get("labels_key") is None:
            return None
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
        codes = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.LABELS_KEY))
        categories = list(state.categorical_mapping)
        if state.unlabeled_category not in categories:
            return np.ones(len(indices), dtype=bool)
        return codes.reshape(-1)[indices] != categories.index(state.unlabeled_category)

    def _share(self, labelled: np.ndarray | None) -> float | None:
        """The share of labelled cells to rebalance to, or ``None`` to sample each cell once."""
        if labelled is None or labelled.all() or not labelled.any():
            # nothing to rebalance (a split can leave the training cells without labels)
            return None
        if self.labelled_share != "auto":
            return self.labelled_share
        batch_size = self.data_loader_kwargs.get("batch_size") or settings.batch_size
        if labelled.mean() * batch_size >= MIN_LABELLED_PER_BATCH:
            return None
        return AUTO_LABELLED_SHARE

    def train_dataloader(self):
        """The training loader, over labelled cells repeated up to ``labelled_share``."""
        labelled = self._labelled(self.train_idx)
        share = self._share(labelled)
        if share is None:
            return super().train_dataloader()
        n_labelled, n_unlabelled = int(labelled.sum()), int((~labelled).sum())
        copies = math.ceil(share * n_unlabelled / ((1 - share) * n_labelled))
        if copies <= 1:
            return super().train_dataloader()
        logger.info(
            "%d of %d training cells are labelled; each is seen %d times per epoch "
            "(labelled_share=%s).",
            n_labelled,
            len(labelled),
            copies,
            share,
        )
        indices = np.concatenate([self.train_idx, np.repeat(self.train_idx[labelled], copies - 1)])
        return self.data_loader_cls(
            self.adata_manager,
            indices=indices,
            shuffle=True,
            drop_last=self.drop_last,
            load_sparse_tensor=self.load_sparse_tensor,
            pin_memory=self.pin_memory,
            **self.data_loader_kwargs,
        )
