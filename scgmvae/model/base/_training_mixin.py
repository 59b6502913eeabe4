"""Training and query mapping of the GMVAE models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from scvi import settings
from scvi.model.base import ArchesMixin, UnsupervisedTrainingMixin

from scgmvae.train import ClusterInit
from scgmvae.train._cluster_init import cluster_init_epochs

if TYPE_CHECKING:
    from anndata import AnnData

DEFAULT_KL_WARMUP_FRACTION = 0.25
"""KL warm-up lasts this fraction of ``max_epochs`` unless ``plan_kwargs`` say otherwise."""
DEFAULT_LR = 1e-2
"""Learning rate unless ``plan_kwargs`` say otherwise (see the benchmarks page for why)."""
DEFAULT_GRADIENT_CLIP = 10.0
"""Gradient norm clipping unless the trainer options say otherwise."""


class GMVAETrainingMixin(UnsupervisedTrainingMixin, ArchesMixin):
    """``train`` with the GMVAE defaults, and ``load_query_data`` with trainable shifts."""

    def train(
        self,
        max_epochs: int | None = None,
        labelled_share: float | Literal["auto"] | None = "auto",
        cluster_init: bool = True,
        adversarial_classifier: bool = False,
        plan_kwargs: dict | None = None,
        datasplitter_kwargs: dict | None = None,
        **kwargs,
    ):
        """Train the model on the scvi-tools trainer.

        Unlabelled cells get the unsupervised loss and labelled cells the supervised one, in the
        same minibatches, so this one call trains unsupervised, supervised or semi-supervised
        models depending on what was registered with ``setup_anndata``.

        Parameters
        ----------
        max_epochs
            Number of passes through the data; by default scvi-tools' heuristic (400 epochs
            for up to 20,000 cells, fewer beyond).
        labelled_share
            Rebalanced sampling for semi-supervised training: labelled cells are repeated so
            that they make up at least this share of each epoch (see
            :class:`~scgmvae.train.GMVAEDataSplitter`); ``None`` samples every cell once.
            ``"auto"`` rebalances to a quarter of each epoch when fewer than two labelled cells
            fall in a minibatch on average, and leaves better-labelled data alone (see the
            benchmarks page for the measurements behind it).
        cluster_init
            For a new model without labels: pre-train with one broad component, place the
            mixture components on clusters of the latent space (minus the condition shift),
            then train unsupervised (:class:`~scgmvae.train.ClusterInit`; the first 30% and
            the next 10% of ``max_epochs``), so that the clusters do not depend on the random
            start. The clusters are plain k-means or finer k-means clusters merged by Ward's
            linkage, whichever has the higher silhouette. Models with labels, trained models
            (continued training) and query models train as before; ``False`` trains from
            random components.
        adversarial_classifier
            Train a batch classifier on z against the encoder, so that z hides the batches
            registered with ``batch_key`` (:class:`~scgmvae.train.GMVAETrainingPlan`; its
            ``scale_adversarial_loss`` in ``plan_kwargs`` sets the weight). For integration
            across donors or samples; the benchmarks page shows what it changes.
        plan_kwargs
            Keyword arguments for :class:`~scgmvae.train.GMVAETrainingPlan` (``lr``,
            ``n_epochs_kl_warmup``, ``use_labels``, ``lr_decay_share``, ...). The learning rate
            defaults to 1e-2, constant unless ``lr_decay_share`` lets it fall over the last
            steps, and the KL warm-up to a quarter of ``max_epochs``; ``use_labels=False``
            trains every cell with the unsupervised loss.
        datasplitter_kwargs
            Keyword arguments for :class:`~scgmvae.train.GMVAEDataSplitter`.
        **kwargs
            Passed to :meth:`scvi.model.base.UnsupervisedTrainingMixin.train` (``batch_size``,
            ``early_stopping``, ``train_size``, ``accelerator``, ``devices``, trainer options).
        """
        from scvi.model._utils import get_max_epochs_heuristic

        if max_epochs is None:
            max_epochs = get_max_epochs_heuristic(self.adata.n_obs)
        plan_kwargs = dict(plan_kwargs or {})
        plan_kwargs.setdefault("lr", DEFAULT_LR)
        plan_kwargs.setdefault("adversarial_classifier", adversarial_classifier)
        if "n_steps_kl_warmup" not in plan_kwargs:
            plan_kwargs.setdefault(
                "n_epochs_kl_warmup", max(1, int(DEFAULT_KL_WARMUP_FRACTION * max_epochs))
            )
        kwargs.setdefault("gradient_clip_val", DEFAULT_GRADIENT_CLIP)
        # scvi-tools leaves the module in eval mode after training and Lightning no longer
        # switches it back: without this, a second train() call (continued or Leiden-guided
        # training) would run without dropout, batch-norm updates or latent sampling.
        self.module.train()
        datasplitter_kwargs = {"labelled_share": labelled_share, **(datasplitter_kwargs or {})}
        pretrain_epochs, guide_epochs = cluster_init_epochs(max_epochs)
        if cluster_init and pretrain_epochs and self._is_new_and_unlabelled():
            callback = ClusterInit(pretrain_epochs, guide_epochs, seed=settings.seed or 0)
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), callback]
        return super().train(
            max_epochs=max_epochs,
            plan_kwargs=plan_kwargs,
            datasplitter_kwargs=datasplitter_kwargs,
            **kwargs,
        )

    def _is_new_and_unlabelled(self) -> bool:
        """Whether the components are still random and no label anchors them."""
        return (
            not self.label_names
            and not self.is_trained_
            and not getattr(self, "_is_query", False)
            and self.module.n_components > 1
        )

    @classmethod
    def load_query_data(cls, adata: AnnData | None = None, reference_model=None, **kwargs):
        """Build a query model from a trained reference (scArches, thesis §9.2).

        scvi-tools' :meth:`~scvi.model.base.ArchesMixin.load_query_data`, which freezes the
        reference weights and trains only those of new categories: new batches (donors,
        samples) and new conditions. The learned condition shifts
        (``condition_effect="shift"``) stay trainable, so a new condition learns its own move
        in ``z``; those of the reference conditions get no gradient from cells of new
        conditions.

        Parameters
        ----------
        adata
            Query data with the reference genes, set up like the reference (batches and
            conditions may be new).
        reference_model
            A trained model, or the folder it was saved to.
        **kwargs
            Passed to :meth:`~scvi.model.base.ArchesMixin.load_query_data`.

        Returns
        -------
        The query model, ready for ``train()``.
        """
        model = super().load_query_data(adata, reference_model, **kwargs)
        model._is_query = True  # the reference's components are kept, not re-initialised
        shift = getattr(model.module, "condition_shift", None)
        if shift is not None:
            shift.requires_grad_(True)
        return model
