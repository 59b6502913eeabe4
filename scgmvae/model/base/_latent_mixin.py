"""Latent representations, component probabilities and label predictions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch
from scvi.model.base import VAEMixin

from ._generation_mixin import NORMALIZED_TARGET_SUM

if TYPE_CHECKING:
    from anndata import AnnData

REPRESENTATIONS = ("z", "w")
COVARIATES = ("batch_index", "cat_covs", "cont_covs")
"""Registry keys of the batch and covariates a cell keeps when it moves."""


class LatentMixin(VAEMixin):
    """Encode cells into ``z`` or ``w`` and classify them by mixture component."""

    @torch.inference_mode()
    def get_latent_representation(
        self,
        adata: AnnData | None = None,
        indices: Sequence[int] | None = None,
        give_mean: bool = True,
        batch_size: int | None = None,
        return_dist: bool = False,
        dataloader: Iterator[dict[str, torch.Tensor]] | None = None,
        representation: Literal["z", "w"] = "z",
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The latent representation of each cell in ``z`` (the mixture space) or ``w``.

        Parameters
        ----------
        adata
            AnnData with the registered genes; defaults to the one the model was set up with.
            It needs no labels column: prediction on new cells works without labels.
        indices
            Cells of ``adata`` to use; all by default.
        give_mean
            Return the posterior mean rather than a sample.
        batch_size
            Minibatch size of the forward passes.
        return_dist
            Return the posterior means and variances.
        dataloader
            Iterate over these minibatches instead of ``adata`` (scvi-tools' interface).
        representation
            ``"z"``: the Gaussian-mixture latent; ``"w"``: the latent that generates the mixture.

        Returns
        -------
        Array of shape ``(n_cells, n_latent)`` (or ``n_latent_w``), or the tuple
        ``(means, variances)`` when ``return_dist`` is set.
        """
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be 'z' or 'w', got {representation!r}.")
        means, variances, samples = [], [], []
        for tensors in self._minibatches(adata, indices, batch_size, dataloader):
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
        probs = []
        for tensors in self._minibatches(adata, indices, batch_size):
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
        most probable component. New cells need no labels column; labels the model never saw
        are ignored, as for unlabelled cells.

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

    def _minibatches(
        self,
        adata: AnnData | None,
        indices: Sequence[int] | None,
        batch_size: int | None,
        dataloader: Iterator[dict[str, torch.Tensor]] | None = None,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Minibatches of a trained model's (or the given) cells, in evaluation mode."""
        self._check_if_trained(warn=False)
        self.module.eval()
        if dataloader is not None:
            return dataloader
        adata = self._validate_anndata(adata)
        return self._make_data_loader(adata=adata, indices=indices, batch_size=batch_size)

    def _encoded_minibatches(
        self, adata: AnnData | None, batch_size: int | None, expression: bool = False
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Encoded cells, one minibatch at a time.

        Posterior means of ``z`` and ``w``, the posterior sd of ``z``, component, condition
        (0 for models without conditions), log library size, covariates and, with
        ``expression``, the log-normalised expression. The component is the cell's registered
        label when it has one, else its most probable component.
        """
        module = self.module
        for tensors in self._minibatches(adata, None, batch_size):
            inputs = module._get_inference_input(tensors)
            qz, qw, library = module.encode(**inputs)
            component = module.observed_components(tensors)
            predicted = module.component_probs(qz.loc, inputs["condition"]).argmax(-1)
            condition = inputs["condition"]
            cell = {
                "z": qz.loc,
                "z_scale": qz.scale,
                "w": qw.loc,
                "component": torch.where(component >= 0, component, predicted),
                "condition": torch.zeros_like(component)
                if condition is None
                else condition.reshape(-1).long(),
                "library": library,
                **{key: inputs[key] for key in COVARIATES},
            }
            if expression:
                cell["expression"] = self._log_expression(inputs["x"])
            yield cell

    def _log_expression(self, x: torch.Tensor) -> torch.Tensor:
        """log1p of counts per 10,000 for count likelihoods; the data as they are otherwise."""
        x = x.float()
        if not self.module.is_count_model:
            return x
        library = x.sum(-1, keepdim=True).clamp(min=1.0)
        return torch.log1p(x / library * NORMALIZED_TARGET_SUM)

    @torch.inference_mode()
    def _encode_cells(
        self, adata: AnnData | None, batch_size: int | None, expression: bool = False
    ) -> dict[str, torch.Tensor]:
        """The :meth:`_encoded_minibatches` of ``adata``, concatenated."""
        parts: dict[str, list] = {}
        for cell in self._encoded_minibatches(adata, batch_size, expression):
            for key, value in cell.items():
                parts.setdefault(key, []).append(value)
        return {
            key: None if values[0] is None else torch.cat(values) for key, values in parts.items()
        }
