"""Perturbation prediction: decode cells under another condition (thesis §11.3)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import torch
from scvi.data._constants import _SETUP_ARGS_KEY

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

MIN_RESPONSE_CELLS = 3
"""Fewer cells than this under a condition do not measure a component's response."""
ROUTES = ("z", "w")
DEFAULT_RESPONSE_BANDWIDTH = 0.5
"""Kernel width over components, relative to the median squared centre distance."""
MIN_KERNEL_SCALE = 1e-8
"""Floor of the kernel width, for components whose centres coincide."""
_COVARIATES = ("batch_index", "cat_covs", "cont_covs")


class PerturbationMixin:
    """``predict_perturbation`` for models with a condition (CGMVAE)."""

    @torch.inference_mode()
    def predict_perturbation(
        self,
        adata: AnnData,
        target_condition: str,
        route: Literal["z", "w"] = "z",
        values: Literal["sample", "mean"] = "sample",
        n_samples: int = 1,
        response_bandwidth: float = DEFAULT_RESPONSE_BANDWIDTH,
        batch_size: int | None = None,
    ) -> AnnData:
        """Predict how cells would look under another condition (thesis §11.3).

        Each cell is encoded with its true condition and keeps its component: its registered
        label, or its most probable component for unlabelled cells (new cells need no labels
        column). With ``route="z"`` (default) the cell's own ``z`` is moved to the target
        condition and decoded, which keeps what is particular to the cell; with ``route="w"``
        (the thesis' route) its ``w`` and component are decoded into the component's mean
        ``z`` first. The move: with ``condition_effect="shift"`` the response of the cell's
        component measured on the training data (the change of the component's mean ``z``
        between the two conditions); a component never seen under one of the conditions (a
        held-out cell type) responds like the components it resembles, weighted by a Gaussian
        kernel of the distance between component centres. With ``"network"``, the generative
        networks decode under the target condition. Cells keep their batch and covariates.
        Route ``z`` sits a little below real log-means of highly expressed genes: a cell's own
        ``z`` keeps some of its counts' noise. The benchmarks page compares the routes.

        Parameters
        ----------
        adata
            Cells to flip, with the registered genes and condition column (e.g. the control
            cells of the data).
        target_condition
            A registered condition, e.g. ``"stimulated"``.
        route
            Move and decode the cell's ``z``, or decode through ``w`` and the mixture
            component.
        values
            ``"sample"``: counts drawn from the likelihood at each cell's library size, then
            log-normalised like real data; ``"mean"``: the decoder's expected expression,
            log-normalised (smoother, but above real log-means for lowly expressed genes).
        n_samples
            With ``values="sample"``, the number of draws per cell whose log-normalised values
            are averaged: more draws estimate each cell's expected log-expression with less
            noise; with one draw the cell looks like a real cell and its counts are kept.
        response_bandwidth
            Width of the kernel over components, relative to the median squared distance
            between component centres; small values follow the nearest component.
        batch_size
            Minibatch size of the forward passes.

        Returns
        -------
        AnnData with one row per input cell and the input's ``var``: ``.X`` holds the
        predicted expression as log1p of counts normalised to 10,000 per cell (scanpy's
        ``normalize_total(target_sum=1e4)`` + ``log1p``) for count likelihoods, with the
        counts in ``layers["counts"]`` (one draw only), or in the data's own space otherwise.
        ``.obs`` is the input's plus ``source_condition`` and ``target_condition``.
        """
        if route not in ROUTES:
            raise ValueError(f"route must be 'w' or 'z', got {route!r}.")
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
        if response_bandwidth <= 0:
            raise ValueError(f"response_bandwidth must be positive, got {response_bandwidth}.")
        (target_code,) = self._condition_codes([target_condition])
        self._check_if_trained(warn=True)
        cells = self._encode_cells(adata, batch_size)
        z = self._moved_latents(cells, target_code, route, response_bandwidth, batch_size)
        condition_key = self.adata_manager.registry[_SETUP_ARGS_KEY]["condition_key"]
        obs = adata.obs.copy()
        obs["source_condition"] = adata.obs[condition_key].astype(str).to_numpy()
        obs["target_condition"] = target_condition
        return self._decode_to_anndata(
            z,
            cells["library"],
            torch.full_like(cells["condition"][:, None], target_code),
            obs,
            values=values,
            n_samples=n_samples,
            covariates={key: cells[key] for key in _COVARIATES},
            batch_size=batch_size,
            var=adata.var.copy(),
        )

    def _moved_latents(
        self,
        cells: dict[str, torch.Tensor],
        target_code: int,
        route: str,
        bandwidth: float,
        batch_size: int | None,
    ) -> torch.Tensor:
        """The ``z`` each cell is decoded from under the target condition."""
        module = self.module
        z, component, source = cells["z"].clone(), cells["component"], cells["condition"]
        if route == "w":
            # with the shift, the component is decoded under the source condition and moved
            # by its response below; the networks decode it under the target directly
            target = torch.full_like(source, target_code)
            decode_as = source if module.condition_effect == "shift" else target
            means, _ = module.mixture_components(cells["w"], decode_as[:, None])
            z = means[torch.arange(len(z)), component]
        responses = self._condition_responses(target_code, batch_size, bandwidth)
        return z + self._latent_moves(component, source, responses)

    def _condition_responses(
        self,
        target_code: int,
        batch_size: int | None,
        bandwidth: float = DEFAULT_RESPONSE_BANDWIDTH,
    ) -> dict[int, torch.Tensor]:
        """Each other condition's component responses towards ``target_code`` (shift only)."""
        if self.module.condition_effect != "shift":
            return {}
        return {
            code: self._component_responses(code, target_code, bandwidth, batch_size)
            for code in range(len(self.condition_names))
            if code != target_code
        }

    def _latent_moves(
        self,
        component: torch.Tensor,
        source: torch.Tensor,
        responses: dict[int, torch.Tensor],
    ) -> torch.Tensor:
        """The move in ``z`` of each cell: its component's response from its own condition."""
        moves = torch.zeros(len(component), self.module.n_latent, device=component.device)
        for code, response in responses.items():
            cells = source == code
            moves[cells] = response[component[cells]]
        return moves

    @torch.inference_mode()
    def _encode_cells(self, adata: AnnData, batch_size: int | None) -> dict[str, torch.Tensor]:
        """Posterior means of ``z`` and ``w``, component, condition, library and covariates.

        The component is the cell's registered label when it has one, else its most probable
        component.
        """
        module = self.module
        parts: dict[str, list] = {}
        for tensors in self._minibatches(adata, None, batch_size):
            inputs = module._get_inference_input(tensors)
            qz, qw, library = module.encode(**inputs)
            component = module.observed_components(tensors)
            predicted = module.component_probs(qz.loc, inputs["condition"]).argmax(-1)
            cell = {
                "z": qz.loc,
                "w": qw.loc,
                "component": torch.where(component >= 0, component, predicted),
                "condition": inputs["condition"].reshape(-1).long(),
                "library": library,
                **{key: inputs[key] for key in _COVARIATES},
            }
            for key, value in cell.items():
                parts.setdefault(key, []).append(value)
        return {
            key: None if values[0] is None else torch.cat(values) for key, values in parts.items()
        }

    @torch.inference_mode()
    def _component_responses(
        self, source_code: int, target_code: int, bandwidth: float, batch_size: int | None
    ) -> torch.Tensor:
        """How each component moves in ``z`` from the source to the target condition.

        Measured on the training data (``self.adata``): the difference of the mean posterior
        ``z`` of the component's cells under the two conditions. A component without enough
        cells under one of them (e.g. a cell type never seen stimulated) gets the responses of
        the measured components, weighted by ``exp(-d² / (bandwidth * median d²))`` with ``d``
        the distance between component centres: it responds like the types it resembles.

        Returns
        -------
        Tensor of shape ``(n_components, n_latent)``.
        """
        cells = self._encode_cells(self.adata, batch_size)
        centres = self._component_centres(cells, (source_code, target_code))
        measured = ~torch.isnan(centres).any(-1).any(0)
        module = self.module
        device = centres.device
        # the learned shift stands in for components that cannot be measured or borrow
        learned = module.latent_shift(
            torch.tensor([[target_code]], device=device), 1, device
        ) - module.latent_shift(torch.tensor([[source_code]], device=device), 1, device)
        responses = learned.expand(module.n_components, -1).clone()
        if not bool(measured.any()):
            logger.info(
                "No component has training cells under both conditions; using the learned "
                "condition shift for every component."
            )
            return responses
        responses[measured] = centres[1, measured] - centres[0, measured]
        for k in torch.nonzero(~measured).flatten().tolist():
            # compare centres under the condition the component was seen in
            side = 0 if not torch.isnan(centres[0, k]).any() else 1
            if torch.isnan(centres[side, k]).any():
                continue  # a component without cells keeps the learned shift
            distances = (centres[side, measured] - centres[side, k]).square().sum(-1)
            scale = bandwidth * distances.median().clamp(min=MIN_KERNEL_SCALE)
            weights = torch.exp(-(distances - distances.min()) / scale)
            responses[k] = (weights[:, None] * responses[measured]).sum(0) / weights.sum()
        return responses

    def _component_centres(
        self, cells: dict[str, torch.Tensor], condition_codes: tuple[int, ...]
    ) -> torch.Tensor:
        """Mean ``z`` of each component under each condition (NaN without enough cells)."""
        z, component, condition = cells["z"], cells["component"], cells["condition"]
        n_components = self.module.n_components
        centres = torch.full(
            (len(condition_codes), n_components, z.shape[1]), float("nan"), device=z.device
        )
        for side, code in enumerate(condition_codes):
            for k in range(n_components):
                members = (component == k) & (condition == code)
                if int(members.sum()) >= MIN_RESPONSE_CELLS:
                    centres[side, k] = z[members].mean(0)
        return centres
