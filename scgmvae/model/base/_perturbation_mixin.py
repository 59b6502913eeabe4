"""Perturbation prediction: move cells to another condition (thesis §11.3)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import torch
from scvi.data._constants import _SETUP_ARGS_KEY

from ._generation_mixin import NORMALIZED_TARGET_SUM

if TYPE_CHECKING:
    from anndata import AnnData

logger = logging.getLogger(__name__)

MIN_RESPONSE_CELLS = 3
"""Fewer cells than this under a condition do not measure a component's response."""
EXPRESSION_ROUTE = "expression"
ROUTES = (EXPRESSION_ROUTE, "z", "w")
DEFAULT_RESPONSE_BANDWIDTH = 0.25
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
        route: Literal["expression", "z", "w"] = EXPRESSION_ROUTE,
        values: Literal["sample", "mean"] = "sample",
        n_samples: int = 1,
        response_bandwidth: float = DEFAULT_RESPONSE_BANDWIDTH,
        batch_size: int | None = None,
    ) -> AnnData:
        """Predict how cells would look under another condition (thesis §11.3).

        Each cell is encoded with its true condition and keeps its component: its registered
        label, or its most probable component for unlabelled cells (new cells need no labels
        column). Each component has a response, measured on the training data between the
        cell's condition and the target: with ``route="expression"`` (default) the change of
        the mean log-normalised expression of the component's cells, gene by gene; with the
        decoding routes ``"z"`` and ``"w"`` the change of their mean ``z``. A component never
        seen under one of the two conditions (a held-out cell type) responds like the
        components it resembles: their responses weighted by a Gaussian kernel of the distance
        between component centres in ``z``.

        Route ``"expression"`` adds the response to the cell's own log-normalised expression:
        the cell keeps its identity and its spread exactly, and the response is the one the
        training cells showed, not one a decoder makes up for a region of ``z`` it has never
        seen. With ``route="z"`` the cell's own ``z`` is moved by the latent response and
        decoded; with ``route="w"`` (the thesis' route) its ``w`` and component are decoded
        into the component's mean ``z`` first, then moved. With
        ``condition_effect="network"`` the decoding routes decode under the target condition
        instead of moving ``z``. Cells keep their batch and covariates. The benchmarks page
        compares the routes.

        Parameters
        ----------
        adata
            Cells to move, with the registered genes and condition column (e.g. the control
            cells of the data).
        target_condition
            A registered condition, e.g. ``"stimulated"``.
        route
            ``"expression"``: the cell's expression plus its component's expression response;
            ``"z"``: move and decode the cell's ``z``; ``"w"``: decode through ``w`` and the
            mixture component.
        values
            Decoding routes only. ``"sample"``: counts drawn from the likelihood at each cell's
            library size, then log-normalised like real data; ``"mean"``: the decoder's
            expected expression, log-normalised (smoother, but above real log-means for lowly
            expressed genes).
        n_samples
            Decoding routes with ``values="sample"``: the number of draws per cell whose
            log-normalised values are averaged. More draws estimate each cell's expected
            log-expression with less noise but shrink the cells' spread; with one draw the
            cell looks like a real cell and its counts are kept.
        response_bandwidth
            Width of the kernel over components, relative to the median squared distance
            between component centres; small values follow the nearest component.
        batch_size
            Minibatch size of the forward passes.

        Returns
        -------
        AnnData with one row per input cell and the input's ``var``: ``.X`` holds the
        predicted expression as log1p of counts normalised to 10,000 per cell (scanpy's
        ``normalize_total(target_sum=1e4)`` + ``log1p``) for count likelihoods, or in the
        data's own space otherwise. Route ``"expression"`` clips log-normalised values at 0
        and has no counts; the decoding routes keep the sampled counts in
        ``layers["counts"]`` (one draw only). ``.obs`` is the input's plus
        ``source_condition`` and ``target_condition``.
        """
        import anndata

        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}, got {route!r}.")
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
        if response_bandwidth <= 0:
            raise ValueError(f"response_bandwidth must be positive, got {response_bandwidth}.")
        (target_code,) = self._condition_codes([target_condition])
        self._check_if_trained(warn=True)
        cells = self._encode_cells(adata, batch_size, expression=route == EXPRESSION_ROUTE)
        condition_key = self.adata_manager.registry[_SETUP_ARGS_KEY]["condition_key"]
        obs = adata.obs.copy()
        obs["source_condition"] = adata.obs[condition_key].astype(str).to_numpy()
        obs["target_condition"] = target_condition
        if route == EXPRESSION_ROUTE:
            moved = self._moved_expression(cells, target_code, response_bandwidth, batch_size)
            return anndata.AnnData(X=moved.cpu().numpy(), obs=obs, var=adata.var.copy())
        z = self._moved_latents(cells, target_code, route, response_bandwidth, batch_size)
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

    def _moved_expression(
        self,
        cells: dict[str, torch.Tensor],
        target_code: int,
        bandwidth: float,
        batch_size: int | None,
    ) -> torch.Tensor:
        """The cells' log-normalised expression plus their components' expression responses."""
        responses = {
            code: self._expression_responses(code, target_code, bandwidth, batch_size)
            for code in range(len(self.condition_names))
            if code != target_code
        }
        moved = cells["expression"] + self._moves(
            cells["component"], cells["condition"], responses
        )
        if self.module.is_count_model:
            moved = moved.clamp(min=0.0)  # log-normalised values are never negative
        return moved

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
        return self._moves(component, source, responses, self.module.n_latent)

    @staticmethod
    def _moves(
        component: torch.Tensor,
        source: torch.Tensor,
        responses: dict[int, torch.Tensor],
        n_features: int | None = None,
    ) -> torch.Tensor:
        """Each cell's move: its component's response from its own condition (0 at target)."""
        if n_features is None:
            n_features = next(iter(responses.values())).shape[1]
        moves = torch.zeros(len(component), n_features, device=component.device)
        for code, response in responses.items():
            cells = source == code
            moves[cells] = response[component[cells]]
        return moves

    def _encoded_minibatches(
        self, adata: AnnData | None, batch_size: int | None, expression: bool = False
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Encoded cells, one minibatch at a time.

        Posterior means of ``z`` and ``w``, component, condition, library, covariates and, with
        ``expression``, the log-normalised expression. The component is the cell's registered
        label when it has one, else its most probable component.
        """
        module = self.module
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

    @torch.inference_mode()
    def _component_means(
        self, condition_codes: tuple[int, ...], batch_size: int | None, expression: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean ``z`` (and log-normalised expression) of each component's training cells.

        Returns
        -------
        The centres, of shape ``(n_codes, n_components, n_latent)``, and with ``expression``
        the expression means, ``(n_codes, n_components, n_genes)``, else None; both NaN where
        a component has fewer than ``MIN_RESPONSE_CELLS`` cells under a condition.
        """
        n_components = self.module.n_components
        sums: dict[str, torch.Tensor] = {}
        counts = None
        for cell in self._encoded_minibatches(self.adata, batch_size, expression):
            keys = ("z", "expression") if expression else ("z",)
            if counts is None:
                device = cell["z"].device
                counts = torch.zeros(len(condition_codes), n_components, device=device)
                sums = {
                    key: torch.zeros(
                        len(condition_codes), n_components, cell[key].shape[1], device=device
                    )
                    for key in keys
                }
            for side, code in enumerate(condition_codes):
                rows = cell["condition"] == code
                members = cell["component"][rows]
                counts[side].index_add_(0, members, torch.ones_like(members, dtype=torch.float))
                for key in keys:
                    sums[key][side].index_add_(0, members, cell[key][rows])
        too_few = counts < MIN_RESPONSE_CELLS
        means = {}
        for key, total in sums.items():
            mean = total / counts.clamp(min=1.0)[..., None]
            mean[too_few] = float("nan")
            means[key] = mean
        return means["z"], means.get("expression")

    @staticmethod
    def _borrowing_weights(centres: torch.Tensor, bandwidth: float) -> torch.Tensor:
        """Which measured responses each component takes, and with which weights.

        A component with cells under both conditions (measured) takes its own response. A
        component seen under one of them takes the measured components' responses weighted
        by ``exp(-d² / (bandwidth * median d²))``, ``d`` the distance between component
        centres under that condition: it responds like the components it resembles. A
        component without cells gets a row of zeros.

        Returns
        -------
        Tensor of shape ``(n_components, n_components)`` whose rows sum to 1 or 0.
        """
        measured = ~torch.isnan(centres).any(-1).any(0)
        weights = torch.diag(measured.float())
        if not bool(measured.any()):
            return weights
        for k in torch.nonzero(~measured).flatten().tolist():
            seen = ~torch.isnan(centres[:, k]).any(-1)
            if not bool(seen.any()):
                continue
            side = int(torch.nonzero(seen)[0])
            distances = (centres[side, measured] - centres[side, k]).square().sum(-1)
            scale = bandwidth * distances.median().clamp(min=MIN_KERNEL_SCALE)
            kernel = torch.exp(-(distances - distances.min()) / scale)
            weights[k, measured] = kernel / kernel.sum()
        return weights

    @torch.inference_mode()
    def _component_responses(
        self, source_code: int, target_code: int, bandwidth: float, batch_size: int | None
    ) -> torch.Tensor:
        """How each component moves in ``z`` from the source to the target condition.

        Measured on the training data (``self.adata``): the difference of the mean posterior
        ``z`` of the component's cells under the two conditions, borrowed from the measured
        components by the others (:meth:`_borrowing_weights`). Components without cells keep
        the learned condition shift.

        Returns
        -------
        Tensor of shape ``(n_components, n_latent)``.
        """
        centres, _ = self._component_means((source_code, target_code), batch_size)
        module = self.module
        device = centres.device
        # the learned shift stands in for components that cannot be measured or borrow
        learned = module.latent_shift(
            torch.tensor([[target_code]], device=device), 1, device
        ) - module.latent_shift(torch.tensor([[source_code]], device=device), 1, device)
        responses = learned.expand(module.n_components, -1).clone()
        weights = self._borrowing_weights(centres, bandwidth)
        if not bool(weights.any()):
            logger.info(
                "No component has training cells under both conditions; using the learned "
                "condition shift for every component."
            )
            return responses
        covered = weights.sum(1) > 0
        responses[covered] = weights[covered] @ torch.nan_to_num(centres[1] - centres[0])
        return responses

    @torch.inference_mode()
    def _expression_responses(
        self, source_code: int, target_code: int, bandwidth: float, batch_size: int | None
    ) -> torch.Tensor:
        """How each component's log-normalised expression changes from source to target.

        Measured on the training data: the difference of the mean log-normalised expression
        of the component's cells under the two conditions, gene by gene, borrowed from the
        measured components by the others with the kernel on their ``z`` centres
        (:meth:`_borrowing_weights`). Components without cells take the plain mean of the
        measured responses.

        Returns
        -------
        Tensor of shape ``(n_components, n_genes)``.
        """
        centres, expression = self._component_means(
            (source_code, target_code), batch_size, expression=True
        )
        weights = self._borrowing_weights(centres, bandwidth)
        measured = weights.diagonal() > 0
        if not bool(measured.any()):
            raise ValueError(
                f"No component has at least {MIN_RESPONSE_CELLS} training cells under both "
                f"conditions ({self.condition_names[source_code]!r} and "
                f"{self.condition_names[target_code]!r}), so there is no measured expression "
                "response to transfer; use route='z', which falls back on the learned shift."
            )
        without_cells = weights.sum(1) == 0
        weights[without_cells] = measured.float() / measured.sum()
        return weights @ torch.nan_to_num(expression[1] - expression[0])
