"""Training plan of the GMVAE models."""

from __future__ import annotations

import inspect
from dataclasses import replace

import torch
from scvi.module.base import LossOutput
from scvi.train import TrainingPlan
from torchmetrics import MetricCollection

# scvi-tools 1.5 adds a fused Adam (the default there); scvi-tools 1.4 has only the plain one.
# The plain one is used on both so that a model trains the same on either (see the benchmarks).
_HAS_FUSED_OPTIMIZER = "fused_optimizer" in inspect.signature(TrainingPlan.__init__).parameters


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

    Parameters
    ----------
    module
        The :class:`~scgmvae.module.GMVAEModule`.
    **kwargs
        Passed to :class:`~scvi.train.TrainingPlan` (``lr``, ``n_epochs_kl_warmup``, ...);
        keyword arguments it does not take go to the module's ``loss`` (e.g.
        ``use_labels=False``).
    """

    def __init__(self, module, **kwargs):
        if _HAS_FUSED_OPTIMIZER:
            kwargs.setdefault("fused_optimizer", False)
        super().__init__(module, **kwargs)

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
