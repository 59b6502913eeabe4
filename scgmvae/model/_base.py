"""Shared model class of GMVAE and CGMVAE."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS
from scvi.data._constants import _SETUP_ARGS_KEY
from scvi.model.base import ArchesMixin, BaseModelClass, UnsupervisedTrainingMixin, VAEMixin

from scgmvae import _validation
from scgmvae.module import GMVAEModule
from scgmvae.module._gmvae import CONDITION_KEY
from scgmvae.train import GMVAEDataSplitter, GMVAETrainingPlan

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

DEFAULT_N_COMPONENTS = 10
NORMALIZED_TARGET_SUM = 1e4
DEFAULT_KL_WARMUP_FRACTION = 0.25
"""KL warm-up lasts this fraction of ``max_epochs`` unless ``plan_kwargs`` say otherwise."""
DEFAULT_LR = 1e-2
"""Learning rate unless ``plan_kwargs`` say otherwise: at scvi-tools' 1e-3 unsupervised
training often merges mixture components (toy_blobs: Hungarian accuracy 0.41-0.54 against
0.97 at 1e-2), while semi-supervised accuracy on Kang is as good or better."""


class BaseGMVAE(VAEMixin, UnsupervisedTrainingMixin, ArchesMixin, BaseModelClass):
    """Model logic shared by :class:`~scgmvae.model.GMVAE` and :class:`~scgmvae.model.CGMVAE`."""

    _module_cls = GMVAEModule
    _training_plan_cls = GMVAETrainingPlan
    _data_splitter_cls = GMVAEDataSplitter

    def __init__(
        self,
        adata: AnnData | None = None,
        n_components: int | None = None,
        n_latent: int = 10,
        n_latent_w: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        gene_likelihood: Literal["nb", "zinb", "poisson", "normal", "bernoulli"] = "nb",
        w_prior: Literal["fixed", "learned"] = "fixed",
        dirichlet_alpha: float = 1.0,
        classification_weight: float = 10.0,
        **module_kwargs,
    ):
        super().__init__(adata)
        layer = self.adata_manager.registry[_SETUP_ARGS_KEY].get("layer")
        _validation.check_values(self.adata, layer, gene_likelihood)

        n_labels = len(self.label_names)
        if n_components is None:
            n_components = n_labels if n_labels > 0 else DEFAULT_N_COMPONENTS
        if n_components < n_labels:
            raise ValueError(
                f"n_components={n_components} is smaller than the number of labels "
                f"({n_labels}: {self.label_names}); use n_components >= {n_labels} (larger "
                "values over-cluster: the extra components are learned unsupervised)."
            )
        n_conditions = len(self.condition_names)
        library_log_means, library_log_vars = self._library_size_stats(layer)
        self.module = self._module_cls(
            n_input=self.summary_stats.n_vars,
            n_components=n_components,
            n_labels=n_labels,
            n_conditions=n_conditions,
            n_latent=n_latent,
            n_latent_w=n_latent_w,
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout_rate=dropout_rate,
            gene_likelihood=gene_likelihood,
            w_prior=w_prior,
            dirichlet_alpha=dirichlet_alpha,
            classification_weight=classification_weight,
            library_log_means=library_log_means,
            library_log_vars=library_log_vars,
            **module_kwargs,
        )
        self._model_summary_string = (
            f"{type(self).__name__}: {n_components} components ({n_labels} labelled"
            f"{', ' + str(n_conditions) + ' conditions' if n_conditions else ''}), "
            f"n_latent: {n_latent}, n_latent_w: {n_latent_w}, n_hidden: {n_hidden}, "
            f"n_layers: {n_layers}, gene_likelihood: {gene_likelihood}, w_prior: {w_prior}, "
            f"dirichlet_alpha: {dirichlet_alpha}"
        )
        self.init_params_ = self._get_init_params(locals())

    # -- registered categories -------------------------------------------------------------

    @property
    def label_names(self) -> list[str]:
        """The known cell-type labels; label ``i`` is mixture component ``i``."""
        setup_args = self.adata_manager.registry[_SETUP_ARGS_KEY]
        if setup_args.get("labels_key") is None:
            return []
        state = self.adata_manager.get_state_registry(REGISTRY_KEYS.LABELS_KEY)
        unlabeled = setup_args.get("unlabeled_category")
        return [str(c) for c in state.categorical_mapping if c != unlabeled]

    @property
    def condition_names(self) -> list[str]:
        """The registered conditions (empty for the unconditional model)."""
        if CONDITION_KEY not in self.adata_manager.data_registry:
            return []
        state = self.adata_manager.get_state_registry(CONDITION_KEY)
        return [str(c) for c in state.categorical_mapping]

    def _library_size_stats(self, layer: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the log library size per condition (for generating cells)."""
        matrix = self.adata.X if layer is None else self.adata.layers[layer]
        totals = _validation.row_sums(matrix)
        log_lib = np.log(np.clip(totals, 1.0, None))
        n_conditions = max(len(self.condition_names), 1)
        if n_conditions == 1:
            codes = np.zeros(self.adata.n_obs, dtype=int)
        else:
            codes = self.get_from_registry(self.adata, CONDITION_KEY).ravel().astype(int)
        means = np.zeros(n_conditions, dtype=np.float32)
        variances = np.ones(n_conditions, dtype=np.float32)
        for c in range(n_conditions):
            values = log_lib[codes == c]
            if values.size:
                means[c] = values.mean()
                variances[c] = max(values.var(), 1e-4)
        return torch.from_numpy(means), torch.from_numpy(variances)

    # -- validation ------------------------------------------------------------------------

    def _validate_anndata(self, adata: AnnData | None = None, copy_if_view: bool = True):
        if adata is not None and adata is not self.adata:
            _validation.check_not_empty(adata)
            registered = self.adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY).column_names
            _validation.check_var_names(adata, registered)
            setup_args = self.adata_manager.registry[_SETUP_ARGS_KEY]
            for key, what in (
                (setup_args.get("condition_key"), "Condition"),
                (setup_args.get("labels_key"), "Labels"),
            ):
                _validation.check_obs_key(adata, key, what)
            _validation.check_values(adata, setup_args.get("layer"), self.module.gene_likelihood)
        return super()._validate_anndata(adata, copy_if_view=copy_if_view)

    # -- training --------------------------------------------------------------------------

    def train(
        self,
        max_epochs: int | None = None,
        labelled_share: float | Literal["auto"] | None = "auto",
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
            ``"auto"`` rebalances to 0.25 when fewer than two labelled cells fall in a
            minibatch on average (below about 1.6% labelled cells at batch size 128), which
            made the 1%-labelled Kang predictions better than scANVI's on every seed; with
            more labels it cost accuracy, so ``"auto"`` leaves them alone (see the benchmarks
            page).
        plan_kwargs
            Keyword arguments for :class:`~scvi.train.TrainingPlan` (``lr``,
            ``n_epochs_kl_warmup``, ...). The learning rate defaults to 1e-2 and the KL warm-up
            to a quarter of ``max_epochs``.
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
        if "n_steps_kl_warmup" not in plan_kwargs:
            plan_kwargs.setdefault(
                "n_epochs_kl_warmup", max(1, int(DEFAULT_KL_WARMUP_FRACTION * max_epochs))
            )
        kwargs.setdefault("gradient_clip_val", 10.0)
        # scvi-tools leaves the module in eval mode after training and Lightning no longer
        # switches it back: without this, a second train() call (continued or Leiden-guided
        # training) would run without dropout, batch-norm updates or latent sampling.
        self.module.train()
        datasplitter_kwargs = {"labelled_share": labelled_share, **(datasplitter_kwargs or {})}
        return super().train(
            max_epochs=max_epochs,
            plan_kwargs=plan_kwargs,
            datasplitter_kwargs=datasplitter_kwargs,
            **kwargs,
        )

    @classmethod
    def load_query_data(
        cls, adata: AnnData | None = None, reference_model=None, **kwargs
    ) -> BaseGMVAE:
        """Build a query model from a trained reference (scArches, thesis §9.2).

        scvi-tools' :meth:`~scvi.model.base.ArchesMixin.load_query_data`, which freezes the
        reference weights and trains only those of new categories (e.g. new conditions). The
        learned condition shifts (``condition_effect="shift"``) stay trainable, so a new
        condition learns its own move in ``z``; those of the reference conditions get no
        gradient from cells of new conditions.

        Parameters
        ----------
        adata
            Query data with the reference genes, set up like the reference (categories may be
            new).
        reference_model
            A trained model, or the folder it was saved to.
        **kwargs
            Passed to :meth:`~scvi.model.base.ArchesMixin.load_query_data`.

        Returns
        -------
        The query model, ready for ``train()``.
        """
        model = super().load_query_data(adata, reference_model, **kwargs)
        shift = getattr(model.module, "condition_shift", None)
        if shift is not None:
            shift.requires_grad_(True)
        return model

    # -- inference -------------------------------------------------------------------------

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        give_mean: bool = True,
        batch_size: int | None = None,
        representation: Literal["z", "w"] = "z",
        return_dist: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The latent representation of each cell in ``z`` (the mixture space) or ``w``.

        Parameters
        ----------
        adata
            AnnData with the registered genes; defaults to the one the model was set up with.
        indices
            Cells of ``adata`` to use; all by default.
        give_mean
            Return the posterior mean rather than a sample.
        batch_size
            Minibatch size of the forward passes.
        representation
            ``"z"``: the Gaussian-mixture latent; ``"w"``: the latent that generates the mixture.
        return_dist
            Return the posterior means and variances.

        Returns
        -------
        Array of shape ``(n_cells, n_latent)`` (or ``n_latent_w``), or the tuple
        ``(means, variances)`` when ``return_dist`` is set.
        """
        if representation not in ("z", "w"):
            raise ValueError(f"representation must be 'z' or 'w', got {representation!r}.")
        self._check_if_trained(warn=False)
        adata = self._validate_anndata(adata)
        means, variances, samples = [], [], []
        for tensors in self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size):
            # the encoder alone: no component, Dirichlet or decoder pass
            qz, qw, _ = self.module.encode(**self.module._get_inference_input(tensors))
            posterior = qz if representation == "z" else qw
            means.append(posterior.loc.cpu())
            variances.append(posterior.scale.square().cpu())
            if not give_mean:
                samples.append(posterior.sample().cpu())
        if return_dist:
            return torch.cat(means).numpy(), torch.cat(variances).numpy()
        return torch.cat(means if give_mean else samples).numpy()

    @torch.inference_mode()
    def get_component_probabilities(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """The mixture-component probabilities ``q(y|z,c)`` at the posterior mean of ``z``.

        Parameters
        ----------
        adata
            AnnData with the registered genes; defaults to the one the model was set up with.
        indices
            Cells of ``adata`` to use; all by default.
        batch_size
            Minibatch size of the forward passes.

        Returns
        -------
        Array of shape ``(n_cells, n_components)`` whose rows sum to one.
        """
        self._check_if_trained(warn=False)
        adata = self._validate_anndata(adata)
        probs = []
        for tensors in self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size):
            inputs = self.module._get_inference_input(tensors)
            qz, _, _ = self.module.encode(**inputs)
            probs.append(self.module.component_probs(qz.loc, inputs["condition"]).cpu())
        return torch.cat(probs).numpy()

    def predict(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        soft: bool = False,
        return_components: bool = False,
        batch_size: int | None = None,
    ) -> np.ndarray | pd.DataFrame:
        """Predict the cell type (or the mixture component) of each cell.

        With registered labels the prediction is the most probable labelled component
        (components beyond the labels, from over-clustering, are left out and the
        probabilities renormalised); without labels, or with ``return_components``, it is the
        most probable component.

        Parameters
        ----------
        adata
            AnnData with the registered genes; defaults to the one the model was set up with.
        indices
            Cells of ``adata`` to use; all by default.
        soft
            Return probabilities instead of the most probable class.
        return_components
            Predict mixture components even when labels are registered.
        batch_size
            Minibatch size of the forward passes.

        Returns
        -------
        An array of label names (or integer component ids), or with ``soft`` a DataFrame of
        probabilities with one row per cell (index ``obs_names``) and one column per class.
        """
        probs = self.get_component_probabilities(adata, indices, batch_size)
        labels = self.label_names
        if labels and not return_components:
            probs = probs[:, : len(labels)]
            probs = probs / probs.sum(1, keepdims=True)
            columns: list = labels
        else:
            columns = list(range(probs.shape[1]))
        if soft:
            obs_names = (adata if adata is not None else self.adata).obs_names
            if indices is not None:
                obs_names = obs_names[np.asarray(indices)]
            return pd.DataFrame(probs, index=obs_names, columns=columns)
        best = probs.argmax(1)
        return np.asarray(columns, dtype=object)[best] if columns is labels else best

    # -- generation ------------------------------------------------------------------------

    def _to_output_space(
        self,
        px: torch.distributions.Distribution,
        expression: torch.Tensor,
        values: Literal["sample", "mean"],
        n_samples: int = 1,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Predicted values as users compare them with real data, and sampled counts.

        For count likelihoods ``"sample"`` draws counts and log-normalises them like real data
        (log1p of counts per 10,000), averaged over ``n_samples`` draws; ``"mean"``
        log-normalises the expected expression, which lacks the sampling noise of real cells
        and so sits above their log-means for lowly expressed genes. Otherwise the
        likelihood's sample (averaged likewise) or mean is returned as is. Sampled counts are
        returned when one draw is made.
        """
        if values not in ("sample", "mean"):
            raise ValueError(f"values must be 'sample' or 'mean', got {values!r}.")
        if not self.module.is_count_model:
            out = px.sample((n_samples,)).mean(0) if values == "sample" else expression
            return out.cpu().numpy(), None
        draws = px.sample((n_samples if values == "sample" else 1,))
        counts = draws[0].cpu().numpy() if len(draws) == 1 else None
        if values == "mean":
            return torch.log1p(expression * NORMALIZED_TARGET_SUM).cpu().numpy(), counts
        normalised = draws / draws.sum(-1, keepdim=True).clamp(min=1.0) * NORMALIZED_TARGET_SUM
        return torch.log1p(normalised).mean(0).cpu().numpy(), counts

    @torch.inference_mode()
    def generate(
        self,
        n_samples: int = 100,
        conditions: Sequence[str] | None = None,
        components: Sequence[int] | None = None,
        sample_z: bool = False,
        values: Literal["sample", "mean"] = "sample",
    ) -> AnnData:
        """Generate synthetic cells from the prior (thesis §11.4).

        Samples ``w`` from its prior, decodes every requested mixture component of ``z`` under
        every requested condition from each ``w``, then decodes ``x``.

        Parameters
        ----------
        n_samples
            Number of ``w`` samples; each yields one cell per (component, condition) pair.
        conditions
            Conditions to generate (CGMVAE); all registered ones by default.
        components
            Mixture components to generate; all by default.
        sample_z
            Sample ``z`` from each component rather than take the component means (as the
            thesis does). Sampled ``z`` adds the spread of the component to that of ``w``; on
            Kang it makes generated cells harder to tell apart by type (kNN on real cells:
            0.72 against 0.83 for the means).
        values
            ``"sample"``: cells drawn from the likelihood, like real cells; ``"mean"``: the
            decoder's expected expression.

        Returns
        -------
        AnnData with the model's genes. For count likelihoods ``.X`` holds log1p of counts
        normalised to 10,000 per cell (the scanpy ``normalize_total`` + ``log1p`` convention)
        and ``layers["counts"]`` the counts, drawn with library sizes like the training data's;
        otherwise ``.X`` is in the data's own space.
        ``.obs`` has ``component``, ``label`` (when the component is a labelled one),
        ``condition`` and ``synthetic=True``.
        """
        import anndata

        self._check_if_trained(warn=True)
        module = self.module
        module.eval()
        device = next(module.parameters()).device
        if components is None:
            components = range(module.n_components)
        components = [int(k) for k in components]
        if any(k < 0 or k >= module.n_components for k in components):
            raise ValueError(
                f"components must lie in 0..{module.n_components - 1}, got {components}."
            )
        condition_codes = self._condition_codes(conditions)
        label_names = self.label_names

        blocks, counts, obs = [], [], []
        # a fixed prior is shared by all conditions: decode the same w under each of them
        shared_w = module.w_prior_distribution(None, n_samples, device).sample()
        for code in condition_codes:
            cond = None if code is None else torch.full((n_samples, 1), code, device=device)
            w = (
                shared_w
                if module.w_prior == "fixed"
                else module.w_prior_distribution(cond, n_samples, device).sample()
            )
            means, variances = module.mixture_components(w, cond)
            for k in components:
                z = means[:, k]
                if sample_z:
                    z = torch.distributions.Normal(z, variances[:, k].sqrt()).sample()
                lib_code = 0 if code is None else code
                library = torch.distributions.Normal(
                    module.library_log_means[lib_code], module.library_log_vars[lib_code].sqrt()
                ).sample((n_samples, 1))
                px, expression = module.decode(z, library, cond)
                block, block_counts = self._to_output_space(px, expression, values)
                blocks.append(block)
                if block_counts is not None:
                    counts.append(block_counts)
                obs.append(
                    pd.DataFrame(
                        {
                            "component": k,
                            "label": label_names[k] if k < len(label_names) else None,
                            "condition": None if code is None else self.condition_names[code],
                        },
                        index=range(n_samples),
                    )
                )
        obs_df = pd.concat(obs, ignore_index=True)
        obs_df.index = [f"synthetic_{i}" for i in range(len(obs_df))]
        obs_df["component"] = pd.Categorical(obs_df["component"])
        for col in ("label", "condition"):
            obs_df[col] = pd.Categorical(obs_df[col])
        obs_df["synthetic"] = True
        generated = anndata.AnnData(
            X=np.concatenate(blocks).astype(np.float32),
            obs=obs_df,
            var=pd.DataFrame(index=self._registered_var_names()),
        )
        if counts:
            generated.layers["counts"] = np.concatenate(counts).astype(np.float32)
        return generated

    def _registered_var_names(self) -> pd.Index:
        return pd.Index(self.adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY).column_names)

    def _condition_codes(self, conditions: Sequence[str] | None) -> list[int | None]:
        """Registered codes of ``conditions`` (all by default); ``[None]`` without conditions."""
        names = self.condition_names
        if not names:
            if conditions is not None:
                raise ValueError(f"{type(self).__name__} has no conditions; use CGMVAE.")
            return [None]
        if conditions is None:
            return list(range(len(names)))
        if isinstance(conditions, str):
            conditions = [conditions]
        unknown = [c for c in conditions if c not in names]
        if unknown:
            raise ValueError(
                f"Conditions {unknown} were not registered; choose among {names} (the values "
                "of the condition_key column at setup_anndata)."
            )
        return [names.index(c) for c in conditions]
