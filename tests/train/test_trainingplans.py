"""The training plan: the batch adversary and the learning-rate decay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

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


class _RecordLearningRate(Callback):
    def __init__(self):
        self.rates = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_lr_decay_falls_over_the_last_steps_only(toy_counts):
    GMVAE.setup_anndata(toy_counts)
    model = GMVAE(toy_counts, n_components=5)
    record = _RecordLearningRate()
    model.train(
        max_epochs=10,
        batch_size=len(toy_counts) // 4,
        train_size=1.0,
        plan_kwargs={"lr": 1e-2, "lr_decay_share": 0.5, "lr_decay_factor": 0.1},
        callbacks=[record],
        enable_progress_bar=False,
    )
    rates = np.array(record.rates)
    half = len(rates) // 2
    np.testing.assert_allclose(rates[: half + 1], 1e-2)  # the second half starts at lr
    assert np.all(np.diff(rates[half:]) < 0)  # then falls at every step
    # exponential: the last step runs at lr * factor ** ((half - 1) / half), and the rate
    # reaches lr * factor as training ends
    np.testing.assert_allclose(rates[-1], 1e-2 * 0.1 ** ((half - 1) / half))

    constant = _RecordLearningRate()
    model.train(max_epochs=2, callbacks=[constant], enable_progress_bar=False)
    assert set(constant.rates) == {1e-2}  # the default keeps the rate constant


@pytest.mark.parametrize(
    ("plan_kwargs", "message"),
    [
        ({"lr_decay_share": 1.5}, r"lr_decay_share must be in \[0, 1\]"),
        ({"lr_decay_share": 0.5, "lr_decay_factor": 0}, r"lr_decay_factor must be in \(0, 1\]"),
        (
            {"lr_decay_share": 0.5, "reduce_lr_on_plateau": True},
            "lr_decay_share and reduce_lr_on_plateau",
        ),
    ],
)
def test_lr_decay_arguments_are_checked(toy_counts, plan_kwargs, message):
    GMVAE.setup_anndata(toy_counts)
    model = GMVAE(toy_counts, n_components=5)
    with pytest.raises(ValueError, match=message):
        model.train(max_epochs=1, plan_kwargs=plan_kwargs)
