"""Training plan of the GMVAE models."""

from __future__ import annotations

import inspect
from dataclasses import replace

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import LossOutput
from scvi.nn import FCLayers
from scvi.train import TrainingPlan
from torch import nn
from torchmetrics import MetricCollection

# scvi-tools 1.5 adds a fused Adam (the default there); scvi-tools 1.4 has only the plain one.
# The plain one is used on both so that a model trains the same on either (see the benchmarks).
_HAS_FUSED_OPTIMIZER = "fused_optimizer" in inspect.signature(TrainingPlan.__init__).parameters

ADVERSARY_HIDDEN = 32
"""Width of the two hidden layers of the batch classifier (scvi-tools' adversary has the same)."""
ADVERSARY_LOSS_KEY = "batch_adversary"
DEFAULT_LR_DECAY_FACTOR = 0.1
"""Learning rate at the end of a decay, relative to ``lr``."""


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient flows back negated."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return -grad


class BatchAdversary(nn.Module):
    """Classifier of the batch from z, behind a gradient reversal (domain-adversarial training).

    The classifier learns to tell the batches apart; the reversed gradient moves the encoder
    the other way, towards a z from which the batch cannot be told.
    """

    def __init__(self, n_latent: int, n_batch: int):
        super().__init__()
        self.layers = FCLayers(
            n_in=n_latent, n_out=ADVERSARY_HIDDEN, n_layers=2, n_hidden=ADVERSARY_HIDDEN
        )
        self.logits = nn.Linear(ADVERSARY_HIDDEN, n_batch)

    def forward(self, z: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the batch; its gradient reaches ``z`` negated."""
        logits = self.logits(self.layers(_ReverseGradient.apply(z)))
        return F.cross_entropy(logits, batch_index.view(-1).long())


class GMVAETrainingPlan(TrainingPlan):
    """scvi-tools' :class:`~scvi.train.TrainingPlan` that also works under DDP.

    scvi-tools logs the loss terms of ``LossOutput.extra_metrics`` inside
    ``torch.inference_mode``; with ``strategy="ddp"``, Lightning then fails to average them
    across processes at the end of the epoch ("Inplace update to inference tensor outside
    InferenceMode"). This plan logs them outside inference mode, so the per-term losses
    (``kl_z_train``, ``classification_train``, ...) stay in ``model.history`` on one
    device and on many. At the end of training it also copies the first process's buffers
    (batch-norm running statistics) to the others: DDP syncs them at the start of each step
    only, so after the last step every process held its own, and predictions could differ.
    The optimizer is scvi-tools' plain Adam on every scvi-tools version (1.5's fused Adam is
    not used), so that results do not depend on the installed version.

    With ``adversarial_classifier=True``, a small classifier learns to predict each cell's batch
    from its z while the encoder, through a reversed gradient, learns a z that hides the batch
    (as scvi-tools' ``AdversarialTrainingPlan`` does for totalVI, here in one optimizer step, so
    that gradient clipping and DDP work as without it). The classifier's cross-entropy is
    logged as ``batch_adversary_train``; the validation loss stays the plain negative ELBO.

    Parameters
    ----------
    module
        The :class:`~scgmvae.module.GMVAEModule`.
    adversarial_classifier
        Train the batch classifier against the encoder; needs a ``batch_key`` with at least two
        batches.
    scale_adversarial_loss
        Weight of the classifier's cross-entropy in the loss (and so of the reversed gradient).
    lr_decay_share
        Share of the optimizer steps, the last ones, over which the learning rate falls
        exponentially (step by step) from ``lr`` to ``lr * lr_decay_factor`` at the final
        step. ``0`` keeps the rate constant. The steps are those of one ``train()``
        call, the cluster initialisation's phases included: they come first, so a share
        that does not reach back into them leaves them at the full rate.
    lr_decay_factor
        The learning rate at the end of training, relative to ``lr``; in ``(0, 1]``.
    **kwargs
        Passed to :class:`~scvi.train.TrainingPlan` (``lr``, ``n_epochs_kl_warmup``, ...);
        keyword arguments it does not take go to the module's ``loss`` (e.g.
        ``use_labels=False``).
    """

    def __init__(
        self,
        module,
        adversarial_classifier: bool = False,
        scale_adversarial_loss: float = 1.0,
        lr_decay_share: float = 0.0,
        lr_decay_factor: float = DEFAULT_LR_DECAY_FACTOR,
        **kwargs,
    ):
        if not 0 <= lr_decay_share <= 1:
            raise ValueError(f"lr_decay_share must be in [0, 1], got {lr_decay_share}.")
        if not 0 < lr_decay_factor <= 1:
            raise ValueError(f"lr_decay_factor must be in (0, 1], got {lr_decay_factor}.")
        if lr_decay_share > 0 and kwargs.get("reduce_lr_on_plateau"):
            raise ValueError(
                "lr_decay_share and reduce_lr_on_plateau both set the learning rate: use one."
            )
        if _HAS_FUSED_OPTIMIZER:
            kwargs.setdefault("fused_optimizer", False)
        super().__init__(module, **kwargs)
        self.adversary = None
        if adversarial_classifier:
            if module.n_batch < 2:
                raise ValueError(
                    "adversarial_classifier=True needs at least two batches: register them "
                    "with setup_anndata(batch_key=...)."
                )
            self.adversary = BatchAdversary(module.n_latent, module.n_batch)
        self.scale_adversarial_loss = scale_adversarial_loss
        self.lr_decay_share = lr_decay_share
        self.lr_decay_factor = lr_decay_factor

    def forward(self, tensors, **kwargs):
        """The module's outputs; while training, the batch adversary's term joins the loss."""
        inference_outputs, generative_outputs, loss_output = super().forward(tensors, **kwargs)
        if self.adversary is not None and self.training:
            adversary_loss = self.adversary(
                inference_outputs["z"], tensors[REGISTRY_KEYS.BATCH_KEY]
            )
            loss_output = replace(
                loss_output,
                loss=loss_output.loss + self.scale_adversarial_loss * adversary_loss,
                extra_metrics={**loss_output.extra_metrics, ADVERSARY_LOSS_KEY: adversary_loss},
            )
        return inference_outputs, generative_outputs, loss_output

    def configure_optimizers(self):
        config = super().configure_optimizers()
        if self.adversary is not None:
            config["optimizer"].add_param_group({"params": list(self.adversary.parameters())})
        if self.lr_decay_share > 0:
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                config["optimizer"], self._lr_decay(int(self.trainer.estimated_stepping_batches))
            )
            config["lr_scheduler"] = {"scheduler": scheduler, "interval": "step"}
        return config

    def _lr_decay(self, total_steps: int):
        """The factor on ``lr`` at each optimizer step of a run of ``total_steps``."""
        decay_steps = max(1.0, self.lr_decay_share * total_steps)
        start = total_steps - decay_steps

        def factor(step: int) -> float:
            progress = min(1.0, max(0.0, (step - start) / decay_steps))
            return self.lr_decay_factor**progress

        return factor

    def on_train_end(self) -> None:
        super().on_train_end()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for buffer in self.module.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def compute_and_log_metrics(
        self, loss_output: LossOutput, metrics: dict[str, MetricCollection], mode: str
    ) -> None:
        super().compute_and_log_metrics(replace(loss_output, extra_metrics={}), metrics, mode)
        for key, value in loss_output.extra_metrics.items():
            self.log(
                f"{key}_{mode}",
                value.detach(),
                on_step=self.on_step,
                on_epoch=self.on_epoch,
                batch_size=loss_output.n_obs_minibatch,
                sync_dist=self.use_sync_dist,
            )
