"""The training plan's batch adversary: reversed gradient, optimizer, history, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scgmvae.model import GMVAE
from scgmvae.train import GMVAETrainingPlan
from scgmvae.train._trainingplans import BatchAdversary


def test_adversary_reverses_the_gradient_reaching_z():
    torch.manual_seed(0)
    adversary = BatchAdversary(n_latent=5, n_batch=3).eval()  # no dropout: same pass twice
    z = torch.randn(16, 5, requires_grad=True)
    batch = torch.randint(0, 3, (16, 1))
    adversary(z, batch).backward()
    reversed_grad = z.grad.clone()

    z.grad = None
    logits = adversary.logits(adversary.layers(z))
    torch.nn.functional.cross_entropy(logits, batch.view(-1)).backward()
    torch.testing.assert_close(reversed_grad, -z.grad)
    # the classifier itself still learns to tell the batches apart (gradient not reversed)
    assert all(p.grad is not None for p in adversary.parameters())


@pytest.fixture
def toy_two_donors(toy_counts):
    toy_counts.obs["donor"] = np.where(np.arange(toy_counts.n_obs) % 2 == 0, "d1", "d2")
    return toy_counts


def test_adversarial_training_logs_and_optimizes_the_classifier(toy_two_donors, max_epochs):
    GMVAE.setup_anndata(toy_two_donors, batch_key="donor")
    model = GMVAE(toy_two_donors, n_components=5)
    model.train(max_epochs=max_epochs, adversarial_classifier=True, enable_progress_bar=False)
    adversary_loss = model.history["batch_adversary_train"]["batch_adversary_train"].astype(float)
    assert len(adversary_loss) == max_epochs and np.isfinite(adversary_loss).all()
    # the validation loss stays the negative ELBO: no adversary term there
    assert "batch_adversary_validation" not in model.history

    plan = GMVAETrainingPlan(model.module, adversarial_classifier=True)
    optimized = {
        id(p)
        for group in plan.configure_optimizers()["optimizer"].param_groups
        for p in group["params"]
    }
    assert {id(p) for p in plan.adversary.parameters()} <= optimized
    assert {id(p) for p in model.module.parameters()} <= optimized


def test_adversary_needs_batches(toy_counts):
    GMVAE.setup_anndata(toy_counts)
    model = GMVAE(toy_counts, n_components=5)
    with pytest.raises(ValueError, match=r"at least two batches.*batch_key"):
        model.train(max_epochs=1, adversarial_classifier=True)
