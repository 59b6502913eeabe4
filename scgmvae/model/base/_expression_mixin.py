"""Normalised expression and differential expression, with scvi-tools' semantics."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch
from scvi import settings
from scvi.model._utils import scrna_raw_counts_properties
from scvi.model.base._de_core import _de_core

from scgmvae.module._components import bounded

if TYPE_CHECKING:
    from anndata import AnnData

# likelihoods whose decoded expression is a positive frequency, as fold-changes need
_DE_LIKELIHOODS = ("nb", "zinb", "poisson", "bernoulli")


def _gene_mask(names: AnnData, gene_list: Sequence[str] | None) -> slice | np.ndarray:
    """The genes of ``gene_list`` among ``names.var_names`` (all of them without a list)."""
    return slice(None) if gene_list is None else names.var_names.isin(gene_list)


class ExpressionMixin:
    """Decoded expression, posterior predictive cells and differential expression, as in scVI."""

    @torch.inference_mode()
    def get_normalized_expression(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        transform_batch: str | int | Sequence[str | int] | None = None,
        gene_list: Sequence[str] | None = None,
        library_size: float | Literal["latent"] = 1,
        n_samples: int = 1,
        n_samples_overall: int | None = None,
        batch_size: int | None = None,
        return_mean: bool = True,
        return_numpy: bool | None = None,
        condition: str | None = None,
    ) -> np.ndarray | pd.DataFrame:
        """The decoded, normalised expression of each cell (scVI's ``rho``).

        Each cell's ``z`` is drawn from its posterior ``n_samples`` times and decoded with the
        cell's own covariates, or under ``transform_batch`` and ``condition`` when they are
        given. For count likelihoods the result is the expected frequency of each gene times
        ``library_size``; for ``"normal"`` and ``"bernoulli"``, the decoder's mean in the data's
        own space.

        Parameters
        ----------
        adata
            AnnData with the registered genes; defaults to the one the model was set up with.
        indices
            Cells of ``adata`` to use; all by default.
        transform_batch
            Batch to decode under: ``None`` the cell's own; a batch name (or code); a list of
            them, whose decoded expressions are averaged.
        gene_list
            Return these genes only.
        library_size
            Scale the frequencies to this many counts per cell, or ``"latent"`` for each cell's
            own (observed) library size.
        n_samples
            Posterior samples of ``z`` per cell.
        n_samples_overall
            Draw this many samples in total from the selected cells (overrides ``n_samples``);
            rows are then samples, not cells.
        batch_size
            Minibatch size of the forward passes.
        return_mean
            Average over the ``n_samples`` samples.
        return_numpy
            Return an array instead of a DataFrame (genes as columns, ``obs_names`` as index);
            always an array when samples are returned.
        condition
            CGMVAE: decode every cell under this registered condition instead of its own;
            cells of other conditions move in ``z`` as in
            :meth:`~scgmvae.model.CGMVAE.predict_perturbation`.

        Returns
        -------
        DataFrame or array of shape ``(n_cells, n_genes)``; ``(n_samples, n_cells, n_genes)``
        without ``return_mean``; ``(n_samples_overall, n_genes)`` with ``n_samples_overall``.
        """
        names = self.adata if adata is None else adata  # validated with the minibatches
        indices = np.arange(names.n_obs) if indices is None else np.asarray(indices)
        if n_samples_overall is not None:
            n_samples = n_samples_overall // len(indices) + 1
        batch_codes = self._transform_batch_codes(transform_batch)
        condition_code = None if condition is None else self._condition_codes([condition])[0]
        gene_mask = _gene_mask(names, gene_list)
        own_library = library_size == "latent"
        # cells of other conditions move to the target as predict_perturbation moves them
        responses = {}
        if condition_code is not None:
            responses = self._condition_responses(condition_code, batch_size)
        expressions = []
        for tensors in self._minibatches(adata, indices, batch_size):
            expression = self._decode_posterior_samples(
                tensors, n_samples, batch_codes, condition_code, responses, own_library
            )[..., gene_mask]
            if self.module.is_count_model and not own_library:
                expression = expression * library_size
            expressions.append(expression.cpu().numpy())
        result = np.concatenate(expressions, axis=1)  # (n_samples, n_cells, n_genes)
        if n_samples_overall is not None:
            pooled = result.reshape(-1, result.shape[-1])
            rng = np.random.default_rng(settings.seed)
            return pooled[rng.choice(len(pooled), n_samples_overall, replace=True)]
        if not return_mean and n_samples > 1:
            return result
        result = result.mean(0)
        if return_numpy:
            return result
        return pd.DataFrame(
            result, index=names.obs_names[indices], columns=names.var_names[gene_mask]
        )

    @torch.inference_mode()
    def posterior_predictive_sample(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        n_samples: int = 1,
        gene_list: Sequence[str] | None = None,
        batch_size: int | None = None,
    ):
        """Cells drawn from the posterior predictive distribution ``p(x_new | x)``, as in scVI.

        For each cell, ``z`` is drawn from its posterior ``n_samples`` times and each draw is
        decoded with the cell's own condition, batch, covariates and library size; the values
        are then drawn from the likelihood (counts for count likelihoods). These are the
        model's own copies of real cells, the counterpart of scVI's
        ``posterior_predictive_sample``.

        Parameters
        ----------
        adata
            AnnData with the registered genes; defaults to the one the model was set up with.
        indices
            Cells of ``adata`` to use; all by default.
        n_samples
            Draws per cell.
        gene_list
            Return these genes only.
        batch_size
            Minibatch size of the forward passes.

        Returns
        -------
        A ``sparse.GCXS`` array (the type scVI returns) of shape ``(n_cells, n_genes)``, or
        ``(n_cells, n_genes, n_samples)`` when ``n_samples > 1``; ``.todense()`` gives NumPy.
        """
        import sparse

        names = self.adata if adata is None else adata
        indices = np.arange(names.n_obs) if indices is None else np.asarray(indices)
        gene_mask = _gene_mask(names, gene_list)
        draws = [
            self._decode_posterior_samples(
                tensors, n_samples, [None], None, {}, own_library=True, draw=True
            )[..., gene_mask]
            .cpu()
            .numpy()
            for tensors in self._minibatches(adata, indices, batch_size)
        ]
        samples = np.moveaxis(np.concatenate(draws, axis=1), 0, -1)  # (cells, genes, samples)
        if n_samples == 1:
            samples = samples[..., 0]
        return sparse.GCXS.from_numpy(samples, compressed_axes=(0,))

    def _decode_posterior_samples(
        self,
        tensors: dict[str, torch.Tensor],
        n_samples: int,
        batch_codes: list[int | None],
        condition_code: int | None,
        responses: dict[int, torch.Tensor],
        own_library: bool,
        draw: bool = False,
    ) -> torch.Tensor:
        """Decoded expression of ``n_samples`` posterior draws of ``z``: ``(S, n, genes)``.

        Each draw is decoded under every batch of ``batch_codes`` (``None``: the cell's own)
        and the results averaged. Frequencies for count likelihoods, times each cell's library
        size with ``own_library``. Under another condition, each cell's draws move by its
        component's response. With ``draw``, values drawn from the likelihood of the first
        batch of ``batch_codes`` instead.
        """
        module = self.module
        inputs = module._get_inference_input(tensors)
        qz, _, log_library = module.encode(**inputs)
        condition = inputs["condition"]
        move = 0.0
        if condition_code is not None:
            if responses:
                labelled = module.observed_components(tensors)
                predicted = module.component_probs(qz.loc, condition).argmax(-1)
                component = torch.where(labelled >= 0, labelled, predicted)
                move = self._latent_moves(component, condition.reshape(-1).long(), responses)
            condition = torch.full_like(condition, condition_code)
        own_batch = inputs["batch_index"]
        batches = [
            own_batch if code is None else torch.full_like(own_batch, code) for code in batch_codes
        ]
        covariates = {"cat_covs": inputs["cat_covs"], "cont_covs": inputs["cont_covs"]}
        samples = []
        for _ in range(n_samples):
            z = bounded(qz.sample(), module.latent_bound) + move
            decoded = [module.decode(z, log_library, condition, b, **covariates) for b in batches]
            if draw:
                samples.append(decoded[0][0].sample())
                continue
            expression = torch.stack([scale for _, scale in decoded]).mean(0)
            if own_library and module.is_count_model:
                expression = expression * torch.exp(log_library)
            samples.append(expression)
        return torch.stack(samples)

    def _condition_responses(self, target_code: int, batch_size: int | None) -> dict:
        """Latent responses towards a condition; none for models that decode it directly."""
        return {}

    def _transform_batch_codes(
        self, transform_batch: str | int | Sequence[str | int] | None
    ) -> list[int | None]:
        if transform_batch is None:
            return [None]
        if isinstance(transform_batch, str | int):
            transform_batch = [transform_batch]
        return [self._batch_code(batch) for batch in transform_batch]

    def differential_expression(
        self,
        adata: AnnData | None = None,
        groupby: str | None = None,
        group1: str | Sequence[str] | None = None,
        group2: str | None = None,
        idx1: Sequence[int] | Sequence[bool] | str | None = None,
        idx2: Sequence[int] | Sequence[bool] | str | None = None,
        mode: Literal["vanilla", "change"] = "vanilla",
        delta: float = 0.25,
        batch_size: int | None = None,
        all_stats: bool = True,
        batch_correction: bool = False,
        batchid1: Sequence[str] | None = None,
        batchid2: Sequence[str] | None = None,
        fdr_target: float = 0.05,
        silent: bool = True,
        condition: str | None = None,
        **kwargs,
    ) -> pd.DataFrame:
        """Differential expression between groups of cells, with scvi-tools' DE machinery.

        Bayes factors of the decoded normalised expression
        (:meth:`get_normalized_expression`, posterior samples of ``z``), in scVI's
        ``"vanilla"`` mode (is the expression higher in group 1?) or ``"change"`` mode (is the
        absolute log fold-change above ``delta``?). Groups can be any column of ``adata.obs``:
        cell types, mixture components (``obs["scgmvae_component"]`` after
        :func:`scgmvae.tl.embed`, for cluster markers) or conditions within one cell type (pass
        ``idx1``/``idx2`` masks, e.g. stimulated and control CD14 monocytes). Expression is
        averaged over the batches (batch-corrected), as in scVI.
        :func:`scgmvae.tl.rank_genes_groups` stores one-against-rest results where scanpy
        looks for them.

        Parameters
        ----------
        adata
            AnnData with the registered genes; defaults to the one the model was set up with.
        groupby
            Column of ``adata.obs`` with the groups.
        group1
            Group(s) of ``groupby`` to test; every group against the rest when None.
        group2
            Group to compare against; the rest of the cells when None.
        idx1, idx2
            Cells of the two groups (indices, boolean masks or ``adata.obs.query`` strings),
            instead of ``groupby``.
        mode
            ``"vanilla"`` or ``"change"``.
        delta
            Smallest absolute log fold-change that counts as a change (``"change"`` mode).
        batch_size
            Minibatch size of the forward passes.
        all_stats
            Add means and detection rates of the raw counts in each group.
        batch_correction
            Compare the groups within each batch (scVI's ``batch_correction``).
        batchid1, batchid2
            Batches to decode group 1 and group 2 under.
        fdr_target
            Target false discovery rate of the ``is_de_fdr_*`` column (``"change"`` mode).
        silent
            Hide the progress bar.
        condition
            CGMVAE: decode every cell under this condition instead of its own (compare cell
            types under one condition); by default cells keep their own condition, so
            comparing conditions within a type measures the response.
        **kwargs
            Passed to :meth:`scvi.model.base.DifferentialComputation.get_bayes_factors`.

        Returns
        -------
        DataFrame with one row per gene (and group, without ``group1``): Bayes factors,
        probabilities of differential expression, log fold-changes (``lfc_mean``,
        ``lfc_median``, ...) and, with ``all_stats``, the raw-count statistics.
        """
        likelihood = self.module.gene_likelihood
        if likelihood not in _DE_LIKELIHOODS:
            raise ValueError(
                f"differential_expression compares decoded frequencies, which "
                f"gene_likelihood={likelihood!r} does not give; use a count likelihood "
                "(raw counts), or scanpy.tl.rank_genes_groups on normalised data."
            )
        adata = self._validate_anndata(adata)
        model_fn = partial(
            self.get_normalized_expression,
            return_numpy=True,
            n_samples=1,
            batch_size=batch_size,
            condition=condition,
        )
        return _de_core(
            self.get_anndata_manager(adata, required=True),
            model_fn,
            None,
            groupby,
            group1,
            group2,
            idx1,
            idx2,
            all_stats,
            scrna_raw_counts_properties,
            adata.var_names,
            mode,
            batchid1,
            batchid2,
            delta,
            batch_correction,
            fdr_target,
            silent,
            **kwargs,
        )
