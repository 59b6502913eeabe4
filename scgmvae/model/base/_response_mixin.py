"""How mixture components respond to a change of condition, measured on the training data."""

from __future__ import annotations

import logging

import torch

from ._quantiles import N_QUANTILES, quantile_function, quantile_levels

logger = logging.getLogger(__name__)

MIN_RESPONSE_CELLS = 3
"""Fewer cells than this under a condition do not measure a component's response."""
DEFAULT_RESPONSE_BANDWIDTH = 0.15
"""Kernel width over components, relative to the median squared centre distance."""
MIN_KERNEL_SCALE = 1e-8
"""Floor of the kernel width, for components whose centres coincide."""


class ResponseMixin:
    """Measures each component's response between conditions on the encoded training cells."""

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
    def _expression_quantiles(
        self,
        source_code: int,
        target_code: int,
        bandwidth: float,
        batch_size: int | None,
        training: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each component's expression distribution under the source, and its response.

        Measured on the training data, gene by gene, as quantile functions on
        ``N_QUANTILES`` levels of the log-normalised expression of the component's cells. The
        response at level ``u`` is the change of the ``u``-quantile between the source and the
        target condition; components not measured under both borrow the responses of the
        measured ones (:meth:`_borrowing_weights`, plain mean for components without cells),
        and a component without source cells takes the borrowed source quantiles too.
        ``training`` is the training data's :meth:`_encode_cells` (with expression), when the
        caller has it already.

        Returns
        -------
        The source quantiles and the responses, both of shape
        ``(n_components, N_QUANTILES, n_genes)``.
        """
        cells = training or self._encode_cells(self.adata, batch_size, expression=True)
        centres, _ = self._component_means((source_code, target_code), batch_size)
        weights = self._borrowing_weights(centres, bandwidth)
        measured = weights.diagonal() > 0
        if not bool(measured.any()):
            raise ValueError(
                f"No component has at least {MIN_RESPONSE_CELLS} training cells under both "
                f"conditions ({self.condition_names[source_code]!r} and "
                f"{self.condition_names[target_code]!r}), so there is no measured expression "
                "response to transfer; use route='z', which falls back on the learned shift."
            )
        weights[weights.sum(1) == 0] = measured.float() / measured.sum()
        n_components, n_genes = self.module.n_components, cells["expression"].shape[1]
        levels = quantile_levels()
        quantiles = torch.zeros(2, n_components, N_QUANTILES, n_genes)
        for side, code in enumerate((source_code, target_code)):
            for k in range(n_components):
                rows = (cells["component"] == k) & (cells["condition"] == code)
                if int(rows.sum()) >= MIN_RESPONSE_CELLS:
                    quantiles[side, k] = quantile_function(cells["expression"][rows], levels)
        responses = torch.einsum("kj,jqg->kqg", weights, quantiles[1] - quantiles[0])
        has_source = ~torch.isnan(centres[0]).any(-1)
        source = quantiles[0].clone()
        source[~has_source] = torch.einsum("kj,jqg->kqg", weights[~has_source], quantiles[0])
        return source, responses
