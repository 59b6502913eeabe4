"""Perturbation prediction: move cells to another condition (thesis §11.3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import pandas as pd
import torch
from scvi.data._constants import _SETUP_ARGS_KEY

from scgmvae._random import seeded_generator

from ._latent_mixin import COVARIATES
from ._quantiles import N_QUANTILES, move_by_quantiles, quantile_function, quantile_levels
from ._response_mixin import DEFAULT_RESPONSE_BANDWIDTH, ResponseMixin

if TYPE_CHECKING:
    from anndata import AnnData

EXPRESSION_ROUTE = "expression"
ROUTES = (EXPRESSION_ROUTE, "z", "w")
DEFAULT_DECODED_RESPONSE_WEIGHT = 0.5
"""Share of the decoded response in the response of a component that borrows."""
DECODED_RESPONSE_DRAWS = 10
"""Count draws per training cell behind the quantiles of the decoded response."""


class PerturbationMixin(ResponseMixin):
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
        decoded_response_weight: float = DEFAULT_DECODED_RESPONSE_WEIGHT,
        batch_size: int | None = None,
    ) -> AnnData:
        """Predict how cells would look under another condition (thesis §11.3).

        Each cell is encoded with its true condition and keeps its component: its registered
        label, or its most probable component for unlabelled cells (new cells need no labels
        column). Each component has a response, measured on the training data between the
        cell's condition and the target: with ``route="expression"`` (default) the change of
        the quantiles of the log-normalised expression of the component's cells, gene by gene;
        with the decoding routes ``"z"`` and ``"w"`` the change of their mean ``z``. A
        component never seen under one of the two conditions (a held-out cell type) responds
        like the components it resembles: their responses weighted by a Gaussian kernel of the
        distance between component centres in ``z``.

        Route ``"expression"`` moves each gene of the cell's own log-normalised expression by
        the response at the cell's level in its component's distribution (quantile
        differences-in-differences; cells tied at one value, such as the zeros, are spread
        evenly over the levels of the tie, in a random order that ``scvi.settings.seed`` fixes
        when it is set): the cell keeps its identity, and the response keeps the spread and
        the zeros the training cells showed. A component that borrows its response has no
        measured response of its own, but the decoder knows its cells: its response is pulled
        towards its decoded response, the change of the quantiles of its training cells'
        decoded expression when they are moved as by ``route="z"``
        (``decoded_response_weight``). With ``route="z"`` the cell's own ``z`` is moved by
        the latent response and decoded; with ``route="w"`` (the thesis' route) its ``w`` and
        component are decoded into the component's mean ``z`` first, then moved. With
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
            ``"expression"``: the cell's expression moved by its component's expression
            response at the cell's quantile;
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
        decoded_response_weight
            Route ``"expression"``, components that borrow their response (never seen under
            one of the two conditions, such as a held-out cell type): the share of the decoded
            response, at every quantile level, from 0 (the borrowed response alone) to 1 (the
            decoded response alone). Components with a measured response keep it.
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
        if not 0 <= decoded_response_weight <= 1:
            raise ValueError(
                f"decoded_response_weight must be between 0 and 1, got {decoded_response_weight}."
            )
        (target_code,) = self._condition_codes([target_condition])
        self._check_if_trained(warn=True)
        cells = self._encode_cells(adata, batch_size, expression=route == EXPRESSION_ROUTE)
        condition_key = self.adata_manager.registry[_SETUP_ARGS_KEY]["condition_key"]
        obs = adata.obs.copy()
        obs["source_condition"] = adata.obs[condition_key].astype(str).to_numpy()
        obs["target_condition"] = target_condition
        if route == EXPRESSION_ROUTE:
            moved = self._moved_expression(
                cells, target_code, response_bandwidth, decoded_response_weight, batch_size
            )
            return anndata.AnnData(X=moved.cpu().numpy(), obs=obs, var=adata.var.copy())
        z = self._moved_latents(cells, target_code, route, response_bandwidth, batch_size)
        return self._decode_to_anndata(
            z,
            cells["library"],
            torch.full_like(cells["condition"][:, None], target_code),
            obs,
            values=values,
            n_samples=n_samples,
            covariates={key: cells[key] for key in COVARIATES},
            batch_size=batch_size,
            var=adata.var.copy(),
        )

    def _moved_expression(
        self,
        cells: dict[str, torch.Tensor],
        target_code: int,
        bandwidth: float,
        decoded_weight: float,
        batch_size: int | None,
    ) -> torch.Tensor:
        """The cells' log-normalised expression, each gene moved by its quantile's response.

        A cell's level in a gene is where its value falls in its component's distribution
        under its own condition; it moves by the component's response at that level, so the
        spread and the zeros of the response carry over, not only its mean
        (:func:`~scgmvae.model.base._quantiles.move_by_quantiles`). The responses of
        components that borrow move ``decoded_weight`` of the way, at every level, to their
        decoded responses (:meth:`_decoded_responses`).
        """
        moved = cells["expression"].clone()
        generator = seeded_generator()
        training = self._encode_cells(self.adata, batch_size, expression=True)
        for code in range(len(self.condition_names)):
            rows = torch.nonzero(cells["condition"] == code).flatten()
            if code == target_code or len(rows) == 0:
                continue
            source, responses = self._expression_quantiles(
                code, target_code, bandwidth, batch_size, training
            )
            if decoded_weight > 0:
                decoded = self._decoded_responses(
                    training, code, target_code, bandwidth, batch_size
                )
                borrowers = ~torch.isnan(decoded).flatten(1).any(-1)
                responses[borrowers] = torch.lerp(
                    responses[borrowers], decoded[borrowers], decoded_weight
                )
            moved[rows] = move_by_quantiles(
                moved[rows], cells["component"][rows], source, responses, generator
            )
        if self.module.is_count_model:
            moved = moved.clamp(min=0.0)  # log-normalised values are never negative
        return moved

    def _decoded_responses(
        self,
        training: dict[str, torch.Tensor],
        source_code: int,
        target_code: int,
        bandwidth: float,
        batch_size: int | None,
    ) -> torch.Tensor:
        """The decoded quantile response of each component that borrows its response.

        A component borrows when it has at least ``MIN_RESPONSE_CELLS`` training cells under
        the source condition and fewer under the target (:meth:`_component_means`). Its
        source cells are decoded twice, with ``DECODED_RESPONSE_DRAWS`` count draws per cell,
        each log-normalised like the data: as they are, and moved to the target as by
        ``route="z"``. Its decoded response at level ``u`` is the change of the ``u``-quantile
        between the two, gene by gene, like a measured response: comparing decoded with
        decoded cells leaves out what the decoder gets wrong about the cells themselves, and
        the quantiles keep the zeros and the spread of the response.

        Returns
        -------
        Tensor of shape ``(n_components, N_QUANTILES, n_genes)``; NaN for the components that
        do not borrow.
        """
        # a centre is NaN where a component has too few cells under that condition
        centres, _ = self._component_means((source_code, target_code), batch_size)
        seen = ~torch.isnan(centres).any(-1)
        borrows = (seen[0] & ~seen[1]).cpu()
        n_genes = training["expression"].shape[1]
        decoded = torch.full((self.module.n_components, N_QUANTILES, n_genes), float("nan"))
        component, condition = training["component"], training["condition"]
        rows = torch.nonzero((condition == source_code) & borrows[component]).flatten()
        if len(rows) == 0:
            return decoded
        # every cell DECODED_RESPONSE_DRAWS times: one count draw per row
        draws = rows.repeat(DECODED_RESPONSE_DRAWS)
        cells = {
            key: None if value is None else value[draws]
            for key, value in training.items()
            if key != "expression"
        }
        covariates = {key: cells[key] for key in COVARIATES}
        obs = pd.DataFrame(index=pd.RangeIndex(len(draws)).astype(str))
        moved = self._moved_latents(cells, target_code, "z", bandwidth, batch_size)
        source, target = (
            torch.as_tensor(
                self._decode_to_anndata(
                    z,
                    cells["library"],
                    torch.full_like(cells["condition"][:, None], code),
                    obs,
                    covariates=covariates,
                    batch_size=batch_size,
                ).X
            )
            for z, code in ((cells["z"], source_code), (moved, target_code))
        )
        levels = quantile_levels()
        for k in torch.nonzero(borrows).flatten().tolist():
            members = cells["component"] == k
            decoded[k] = quantile_function(target[members], levels) - quantile_function(
                source[members], levels
            )
        return decoded

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
