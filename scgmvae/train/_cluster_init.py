"""Cluster initialisation of the mixture components for unsupervised training."""

from __future__ import annotations

import logging

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from scvi.dataloaders import AnnDataLoader

logger = logging.getLogger(__name__)

PRETRAIN_FRACTION = 0.3
"""Share of ``max_epochs`` trained with a single broad component before clustering."""
GUIDE_FRACTION = 0.1
"""Share of ``max_epochs`` trained with the clusters as pseudo-labels."""
MIN_EPOCHS = 10
"""Below this many epochs there is no room for the phases; training stays plain."""
N_KMEANS_INIT = 10
"""Restarts of k-means (the best inertia is kept)."""
AUTO_OVERCLUSTER_FACTOR = 2
"""The finer clustering that ``overcluster_factor="auto"`` weighs against plain k-means."""
SILHOUETTE_MAX_CELLS = 5000
"""Cells sampled for the silhouette that ``"auto"`` compares (it grows with the square)."""
LATENT_BATCH_SIZE = 1024
"""Minibatch size of the forward pass that collects the posterior means."""
BROAD_PRIOR, GUIDE_CENTRES, GUIDE_COMPONENTS = "broad_prior", "guide_centres", "guide_components"
"""The keyword arguments of the module's loss that the phases set."""


def cluster_init_epochs(max_epochs: int) -> tuple[int, int]:
    """Pre-training and guided epochs of :class:`ClusterInit` for a run of ``max_epochs``.

    Returns ``(0, 0)`` when the run is too short for the phases.
    """
    if max_epochs < MIN_EPOCHS:
        return 0, 0
    return (
        max(1, round(PRETRAIN_FRACTION * max_epochs)),
        max(1, round(GUIDE_FRACTION * max_epochs)),
    )


class ClusterInit(Callback):
    """Start the mixture components at clusters of a pre-trained latent space.

    Unsupervised training of a Gaussian mixture from random components lands in different
    optima from seed to seed, often merging several cell types into one component. This
    callback splits one ``train()`` run into three phases, in the spirit of VaDE:

    1. for ``pretrain_epochs`` epochs every unlabelled cell gets one broad component,
       ``KL(q(z|x,c) || N(shift_c, I))`` in place of the mixture terms, as in a plain VAE (for
       a CGMVAE with ``condition_effect="shift"`` the condition shifts are learned meanwhile);
    2. then the posterior means of the training cells, minus their condition's shift, are
       clustered by k-means into ``n_components`` clusters, or ``overcluster_factor`` times as
       many whose centres Ward's linkage merges back into ``n_components`` groups, and for
       ``guide_epochs`` epochs every unlabelled cell takes the supervised loss with the group
       of its nearest centre as its label, which places one component on each group and
       trains ``q(y|z,c)`` on them;
    3. the remaining epochs are plain unsupervised training, in which cells may move between
       components.

    k-means tends to cut a large population into pieces of similar size and to join small
    distinct ones; clustering finer and merging the centres by their distances can keep a
    large population whole and small ones apart, but where the populations are round and of
    similar size plain k-means fits them better. By default (``"auto"``) both are computed
    and the partition with the higher silhouette on the latent space is kept: no labels are
    needed, and a large population cut in pieces lowers the silhouette of the cells at the
    cuts. The phases reach the module through the
    training plan's loss keyword arguments (``broad_prior``, ``guide_centres``,
    ``guide_components``); labelled cells always keep their labels and their supervised loss.
    The models add this callback to ``train()`` for new models without labels
    (``cluster_init=True``).

    Parameters
    ----------
    pretrain_epochs
        Epochs with the broad component.
    guide_epochs
        Epochs with the cluster centres as pseudo-labels.
    seed
        Random state of k-means.
    overcluster_factor
        k-means clusters per mixture component before Ward's linkage on their centres merges
        them into one group per component; 1 is plain k-means. ``"auto"`` clusters both ways
        (1 and 2) and keeps the partition with the higher silhouette score (plain k-means
        on a tie).
    """

    def __init__(
        self,
        pretrain_epochs: int,
        guide_epochs: int,
        seed: int = 0,
        overcluster_factor: float | str = "auto",
    ):
        if pretrain_epochs < 1 or guide_epochs < 1:
            raise ValueError(
                "pretrain_epochs and guide_epochs must be at least 1, got "
                f"{pretrain_epochs} and {guide_epochs}."
            )
        if overcluster_factor != "auto" and (
            isinstance(overcluster_factor, str) or overcluster_factor < 1
        ):
            raise ValueError(
                f'overcluster_factor must be "auto" or at least 1, got {overcluster_factor!r}.'
            )
        self.pretrain_epochs = pretrain_epochs
        self.guide_epochs = guide_epochs
        self.seed = seed
        self.overcluster_factor = overcluster_factor
        self.clusters: np.ndarray | None = None
        """Merged cluster of each training cell (in the order of the training indices)."""
        self.chosen_factor: float | None = None
        """The overcluster factor the clusters were made with (``"auto"``'s choice)."""

    def on_train_start(self, trainer, pl_module) -> None:
        pl_module.loss_kwargs[BROAD_PRIOR] = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch + 1
        if epoch == self.pretrain_epochs:
            pl_module.loss_kwargs.pop(BROAD_PRIOR, None)
            module = pl_module.module
            latent = self._latent(trainer, module)
            centres, components, self.clusters = self._clusters(latent, module.n_components)
            pl_module.loss_kwargs[GUIDE_CENTRES] = torch.as_tensor(
                centres, dtype=torch.float32, device=module.device
            )
            pl_module.loss_kwargs[GUIDE_COMPONENTS] = torch.as_tensor(
                components, dtype=torch.long, device=module.device
            )
            logger.info(
                "ClusterInit: %d k-means clusters of %d cells, merged into %d, after %d epochs.",
                len(centres),
                len(latent),
                len(set(components.tolist())),
                epoch,
            )
        elif epoch == self.pretrain_epochs + self.guide_epochs:
            for key in (GUIDE_CENTRES, GUIDE_COMPONENTS):
                pl_module.loss_kwargs.pop(key, None)

    def on_train_end(self, trainer, pl_module) -> None:
        self._reset(pl_module)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._reset(pl_module)

    @staticmethod
    def _reset(pl_module) -> None:
        for key in (BROAD_PRIOR, GUIDE_CENTRES, GUIDE_COMPONENTS):
            pl_module.loss_kwargs.pop(key, None)

    @torch.no_grad()
    def _latent(self, trainer, module) -> np.ndarray:
        """Posterior means of ``z`` minus the condition shift, for the training cells."""
        datamodule = trainer.datamodule
        indices = getattr(datamodule, "train_idx", None)
        if indices is None:
            indices = np.arange(datamodule.adata_manager.adata.n_obs)
        loader = AnnDataLoader(
            datamodule.adata_manager, indices=indices, batch_size=LATENT_BATCH_SIZE
        )
        was_training = module.training
        module.eval()
        means = []
        for tensors in loader:
            inputs = module._get_inference_input(tensors)
            qz, _, _ = module.encode(**inputs)
            shift = module.latent_shift(inputs["condition"], len(qz.loc), qz.loc.device)
            means.append((qz.loc - shift).cpu())
        module.train(was_training)
        return torch.cat(means).numpy()

    def _clusters(
        self, latent: np.ndarray, n_clusters: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """k-means centres, the merged group of each centre, and the group of each cell."""
        if self.overcluster_factor != "auto":
            self.chosen_factor = self.overcluster_factor
            return self._clusters_with(latent, n_clusters, self.overcluster_factor)
        plain = self._clusters_with(latent, n_clusters, 1)
        merged = self._clusters_with(latent, n_clusters, AUTO_OVERCLUSTER_FACTOR)
        scores = [self._silhouette(latent, groups) for _, _, groups in (plain, merged)]
        logger.info(
            "ClusterInit: silhouette %.3f with plain k-means, %.3f with k-means into %dx as "
            "many clusters merged by Ward's linkage.",
            *scores,
            AUTO_OVERCLUSTER_FACTOR,
        )
        use_merged = scores[1] > scores[0]
        self.chosen_factor = AUTO_OVERCLUSTER_FACTOR if use_merged else 1
        return merged if use_merged else plain

    def _silhouette(self, latent: np.ndarray, groups: np.ndarray) -> float:
        """Silhouette score of a partition; -1 when it has a single group."""
        from sklearn.metrics import silhouette_score

        if len(np.unique(groups)) < 2:
            return -1.0
        sample = SILHOUETTE_MAX_CELLS if len(latent) > SILHOUETTE_MAX_CELLS else None
        return float(silhouette_score(latent, groups, sample_size=sample, random_state=self.seed))

    def _clusters_with(
        self, latent: np.ndarray, n_clusters: int, factor: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_clusters` with one overcluster factor."""
        from sklearn.cluster import AgglomerativeClustering, KMeans

        n_clusters = min(n_clusters, len(latent))
        n_fine = min(round(factor * n_clusters), len(latent))
        kmeans = KMeans(n_fine, n_init=N_KMEANS_INIT, random_state=self.seed).fit(latent)
        if n_fine == n_clusters:
            components = np.arange(n_clusters)
        else:
            merge = AgglomerativeClustering(n_clusters, linkage="ward")
            components = merge.fit_predict(kmeans.cluster_centers_)
        return kmeans.cluster_centers_, components, components[kmeans.labels_]
