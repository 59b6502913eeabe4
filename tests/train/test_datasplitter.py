"""Rebalanced sampling of labelled cells (labelled_share)."""

from __future__ import annotations

import numpy as np
import pytest

from scgmvae.model import CGMVAE, GMVAE
from scgmvae.train import GMVAEDataSplitter


def test_labelled_share_repeats_labelled_cells(toy_semi):
    CGMVAE.setup_anndata(toy_semi, condition_key="condition", labels_key="semi")
    model = CGMVAE(toy_semi)
    splitter = GMVAEDataSplitter(model.adata_manager, labelled_share=0.5, train_size=1.0)
    splitter.setup()
    indices = splitter.train_dataloader().indices
    labelled = toy_semi.obs["semi"].to_numpy() != "Unknown"  # every fourth cell
    counts = np.bincount(indices, minlength=toy_semi.n_obs)
    assert np.all(counts[~labelled] == 1)  # unlabelled cells once per epoch
    assert np.all(counts[labelled] == 3)  # 125 labelled x 3 >= 375 unlabelled
    assert labelled[indices].mean() >= 0.5
    plain = GMVAEDataSplitter(model.adata_manager, train_size=1.0)
    plain.setup()
    assert len(plain.train_dataloader().indices) == toy_semi.n_obs

    model.train(max_epochs=1, labelled_share=0.5, train_size=1.0, batch_size=100)
    assert model.trainer.num_training_batches == 8  # 750 cells, not 500


def test_labelled_share_auto_rebalances_scarce_labels(toy_counts):
    labels = toy_counts.obs["cell_type"].astype(str).to_numpy().copy()
    labels[np.arange(toy_counts.n_obs) % 100 != 0] = "Unknown"  # 1%: 5 of 500 cells
    toy_counts.obs["scarce"] = labels
    CGMVAE.setup_anndata(toy_counts, condition_key="condition", labels_key="scarce")
    model = CGMVAE(toy_counts, n_components=5)
    splitter = GMVAEDataSplitter(model.adata_manager, train_size=1.0, batch_size=128)
    splitter.setup()
    counts = np.bincount(splitter.train_dataloader().indices, minlength=toy_counts.n_obs)
    labelled = labels != "Unknown"
    # 1.3 labelled cells per minibatch on average: repeated to a quarter of the epoch
    assert np.all(counts[labelled] == 33) and np.all(counts[~labelled] == 1)
    # with minibatches of 1,000 cells there are enough labels: every cell once
    large = GMVAEDataSplitter(model.adata_manager, train_size=1.0, batch_size=1000)
    large.setup()
    assert len(large.train_dataloader().indices) == toy_counts.n_obs
    none = GMVAEDataSplitter(model.adata_manager, labelled_share=None, train_size=1.0)
    none.setup()
    assert len(none.train_dataloader().indices) == toy_counts.n_obs


def test_labelled_share_needs_labels_and_a_share(toy_counts, toy_semi):
    GMVAE.setup_anndata(toy_counts)
    model = GMVAE(toy_counts)
    model.train(max_epochs=1)  # "auto" without labels: plain sampling
    with pytest.raises(ValueError, match="labelled_share=0.2 needs labelled cells"):
        GMVAEDataSplitter(model.adata_manager, labelled_share=0.2)  # before any training
    with pytest.raises(ValueError, match="labelled_share=0.2 needs labelled cells"):
        model.train(max_epochs=1, labelled_share=0.2)
    CGMVAE.setup_anndata(toy_semi, condition_key="condition", labels_key="semi")
    with pytest.raises(ValueError, match=r"labelled_share must be in \(0, 1\)"):
        CGMVAE(toy_semi).train(max_epochs=1, labelled_share=1.5)
