"""Decoding latents into cells: synthetic cells and the decode step perturbation shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch
from scvi import REGISTRY_KEYS, settings
from scvi.data._constants import _SETUP_ARGS_KEY

from scgmvae import _validation
from scgmvae._random import seeded_generator
from scgmvae.module._components import bounded
from scgmvae.module._constants import CONDITION_KEY

if TYPE_CHECKING:
    from anndata import AnnData

NORMALIZED_TARGET_SUM = 1e4
"""Counts per cell of the log-normalised output space (scanpy's ``normalize_total``)."""
OUTPUT_VALUES = ("sample", "mean")
LATENT_SOURCES = ("auto", "prior", "posterior")
MIN_LIBRARY_LOG_VAR = 1e-4
"""Floor of the variance of the log library sizes generated cells draw from."""
MIN_LIBRARY_CELLS = 10
"""Fewest training cells of a component under a condition whose library sizes its generated
cells take; a component with fewer takes those of all the condition's training cells. With
``latent="auto"`` it is also the fewest training cells from whose posteriors a component's
cells are drawn: fewer would make its generated cells copies of a handful of cells."""


def log_library_stats(
    log_libraries: np.ndarray, groups: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and variance of the log library sizes of each group's cells, and its cell count.

    A group without cells gets mean 0 and variance 1.
    """
    n_cells = np.bincount(groups, minlength=n_groups)
    means = np.zeros(n_groups, dtype=np.float32)
    variances = np.ones(n_groups, dtype=np.float32)
    for group in np.flatnonzero(n_cells):
        values = log_libraries[groups == group]
        means[group] = values.mean()
        variances[group] = max(values.var(), MIN_LIBRARY_LOG_VAR)
    return means, variances, n_cells


class GenerationMixin:
    """``generate`` and the decode-to-AnnData step that perturbation prediction shares."""

    @torch.inference_mode()
    def generate(
        self,
        n_samples: int = 100,
        conditions: Sequence[str] | None = None,
        components: Sequence[int | str] | None = None,
        sample_z: bool = False,
        values: Literal["sample", "mean"] = "sample",
        batch: str | None = None,
        latent: Literal["auto", "prior", "posterior"] = "auto",
    ) -> AnnData:
        """Generate synthetic cells of every requested mixture component and condition.

        Each (component, condition) pair gets ``n_samples`` cells, with ``z`` from one of two
        sources:

        - the aggregated posterior of the component's training cells under the condition: a
          random training cell of the pair (with replacement), a draw from its ``q(z|x)``,
          and that cell's library size. The cells resemble the pair's real ones, including
          what the encoder uses that the prior misses; they reuse the pair's training cells,
          so a pair with few of them yields cells close to those few.
        - the prior (the thesis, §11.4): ``w`` drawn from its prior, the component's ``z``
          decoded from it (its mean, or a draw with ``sample_z``), and a library size drawn
          from the training cells' sizes. It needs no training cells of the pair, so it also
          generates a component under a condition in which it was never seen.

        Parameters
        ----------
        n_samples
            Number of cells per (component, condition) pair; from the prior each ``w`` sample
            yields one cell per pair.
        conditions
            Conditions to generate (CGMVAE); all registered ones by default.
        components
            Mixture components to generate, as component ids or label names; all by default.
        sample_z
            Prior only. Sample ``z`` from each component rather than take the component means
            (as the thesis does). Sampled ``z`` adds the spread of the component to that of
            ``w``, which makes generated cells harder to tell apart by type. With
            ``latent="auto"`` every pair is drawn from the prior.
        values
            ``"sample"``: cells drawn from the likelihood, like real cells; ``"mean"``: the
            decoder's expected expression.
        batch
            Batch (donor, sample) whose cells to generate, for models set up with
            ``batch_key``; the first registered batch by default.
        latent
            Where ``z`` comes from: ``"auto"``, the aggregated posterior for every pair with
            at least 10 training cells (``MIN_LIBRARY_CELLS``) and the prior for the others;
            ``"posterior"``, the aggregated posterior for every pair, which needs training
            cells of each; ``"prior"``, the prior for every pair.

        Returns
        -------
        AnnData with the model's genes. For count likelihoods ``.X`` holds log1p of counts
        normalised to 10,000 per cell (the scanpy ``normalize_total`` + ``log1p`` convention)
        and ``layers["counts"]`` the counts, drawn with the library sizes of the training cells
        of the component under the condition (from the prior: their log-normal fit, or that of
        all the condition's cells for a component with fewer than 10);
        otherwise ``.X`` is in the data's own space.
        ``.obs`` has ``component``, ``label`` (when the component is a labelled one),
        ``condition``, ``latent`` (``"posterior"`` or ``"prior"``: where the cell's ``z``
        came from), ``batch`` (with a batch key) and ``synthetic=True``.

        Raises
        ------
        ValueError
            With ``latent="posterior"``, for a requested component without training cells
            under a requested condition, or together with ``sample_z``.
        """
        if latent not in LATENT_SOURCES:
            raise ValueError(f"latent must be one of {LATENT_SOURCES}, got {latent!r}.")
        if latent == "posterior" and sample_z:
            raise ValueError(
                "sample_z draws z from the prior's components; with latent='posterior' z "
                "comes from the training cells' posteriors. Use one of the two."
            )
        if sample_z:
            latent = "prior"
        self._check_if_trained(warn=True)
        module = self.module
        module.eval()
        device = module.library_log_means.device
        component_ids = self._component_ids(components)
        condition_codes = self._condition_codes(conditions)
        batch_code = self._batch_code(batch)
        training = None if latent == "prior" else self._encode_cells(self.adata, None)
        sources = {
            (code, k): self._latent_source(latent, training, k, 0 if code is None else code)
            for code in condition_codes
            for k in component_ids
        }
        generator = seeded_generator()
        if "prior" in sources.values():
            library_means, library_sds = self._component_library_priors()
            # a fixed prior is shared by all conditions: decode the same w under each of them
            shared_w = module.w_prior_distribution(None, n_samples, device).sample()
        z_blocks, library_blocks, condition_blocks, obs = [], [], [], []
        for code in condition_codes:
            cond = None if code is None else torch.full((n_samples, 1), code, device=device)
            lib_code = 0 if code is None else code
            if "prior" in (sources[code, k] for k in component_ids):
                w = shared_w
                if module.w_prior != "fixed":
                    w = module.w_prior_distribution(cond, n_samples, device).sample()
                means, variances = module.mixture_components(w, cond)
            for k in component_ids:
                if sources[code, k] == "posterior":
                    z, log_library = self._aggregated_posterior_draws(
                        training, k, lib_code, n_samples, generator
                    )
                else:
                    z = means[:, k]
                    if sample_z:
                        z = torch.distributions.Normal(z, variances[:, k].sqrt()).sample()
                    log_library = torch.distributions.Normal(
                        library_means[lib_code, k], library_sds[lib_code, k]
                    ).sample((n_samples, 1))
                z_blocks.append(z)
                library_blocks.append(log_library.to(device))
                condition_blocks.append(cond)
                obs.append(self._generated_obs(k, code, n_samples, sources[code, k]))
        obs_df = pd.concat(obs, ignore_index=True)
        obs_df.index = [f"synthetic_{i}" for i in range(len(obs_df))]
        for column in obs_df.columns:
            obs_df[column] = pd.Categorical(obs_df[column])
        if batch_code is not None:
            obs_df["batch"] = pd.Categorical([self.batch_names[batch_code]] * len(obs_df))
        obs_df["synthetic"] = True
        z = torch.cat(z_blocks)
        batch_index = None
        if batch_code is not None:
            batch_index = torch.full((z.shape[0], 1), batch_code, device=device)
        return self._decode_to_anndata(
            z,
            torch.cat(library_blocks),
            None if condition_blocks[0] is None else torch.cat(condition_blocks),
            obs_df,
            values=values,
            covariates={"batch_index": batch_index},
        )

    @staticmethod
    def _group_members(
        training: dict[str, torch.Tensor], component: int, condition_code: int
    ) -> torch.Tensor:
        """Indices of the training cells of a component under a condition."""
        in_group = (training["component"] == component) & (training["condition"] == condition_code)
        return torch.nonzero(in_group).flatten()

    def _latent_source(
        self,
        latent: str,
        training: dict[str, torch.Tensor] | None,
        component: int,
        condition_code: int,
    ) -> str:
        """``"posterior"`` or ``"prior"``: the source of a (component, condition) pair's ``z``."""
        if latent != "auto":
            return latent
        enough = len(self._group_members(training, component, condition_code)) >= MIN_LIBRARY_CELLS
        return "posterior" if enough else "prior"

    def _aggregated_posterior_draws(
        self,
        training: dict[str, torch.Tensor],
        component: int,
        condition_code: int,
        n: int,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` draws of ``z`` from a component's training cells' posteriors under a condition.

        Each draw comes with the log library size of the cell it is drawn from.
        """
        members = self._group_members(training, component, condition_code)
        if len(members) == 0:
            labels = self.label_names
            name = f"{component} ({labels[component]!r})" if component < len(labels) else component
            condition = ""
            if self.condition_names:
                condition = f" under {self.condition_names[condition_code]!r}"
            raise ValueError(
                f"Component {name} has no training cells{condition}, so it has no "
                "aggregated posterior to draw from; generate it with latent='prior'."
            )
        picked = members[torch.randint(len(members), (n,), generator=generator)]
        loc, scale = training["z"][picked], training["z_scale"][picked]
        noise = torch.randn(loc.shape, generator=generator).to(loc.device)
        # bounded like the posterior draws the decoder is trained on
        z = bounded(loc + scale * noise, self.module.latent_bound)
        return z, training["library"][picked]

    def _component_library_priors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and sd of the log library size of each component's cells under each condition.

        Both of shape ``(n_conditions or 1, n_components)``, from the training cells. Cell
        types differ in size (monocytes hold several times the counts of T cells), so a
        generated cell takes the library sizes of its own component's cells; a component with
        fewer than ``MIN_LIBRARY_CELLS`` cells under a condition takes the condition's. A
        cell's component is its registered label, else its most probable component.
        """
        module = self.module
        layer = self.adata_manager.registry[_SETUP_ARGS_KEY].get("layer")
        matrix = self.adata.X if layer is None else self.adata.layers[layer]
        log_libraries = np.log(np.clip(_validation.row_sums(matrix), 1.0, None))
        components = np.asarray(self.predict(return_components=True), dtype=int)
        if self.label_names:
            labels = self.get_from_registry(self.adata, REGISTRY_KEYS.LABELS_KEY).ravel()
            labels = labels.astype(int)
            components = np.where(labels < len(self.label_names), labels, components)
        n_codes = module.library_log_means.shape[0]
        codes = np.zeros(len(components), dtype=int)
        if self.condition_names:
            codes = self.get_from_registry(self.adata, CONDITION_KEY).ravel().astype(int)
        n_components = module.n_components
        means, variances, n_cells = log_library_stats(
            log_libraries, codes * n_components + components, n_codes * n_components
        )
        shape = (n_codes, n_components)
        enough = torch.from_numpy(n_cells.reshape(shape) >= MIN_LIBRARY_CELLS)
        condition_means = module.library_log_means.cpu()[:, None].expand(shape)
        condition_vars = module.library_log_vars.cpu()[:, None].expand(shape)
        means = torch.where(enough, torch.from_numpy(means.reshape(shape)), condition_means)
        variances = torch.where(enough, torch.from_numpy(variances.reshape(shape)), condition_vars)
        return means, variances.sqrt()

    def _generated_obs(
        self, component: int, condition_code: int | None, n: int, latent: str
    ) -> pd.DataFrame:
        label_names = self.label_names
        return pd.DataFrame(
            {
                "component": component,
                "label": label_names[component] if component < len(label_names) else None,
                "condition": None
                if condition_code is None
                else self.condition_names[condition_code],
                "latent": latent,
            },
            index=range(n),
        )

    def _decode_to_anndata(
        self,
        z: torch.Tensor,
        log_library: torch.Tensor,
        condition: torch.Tensor | None,
        obs: pd.DataFrame,
        values: Literal["sample", "mean"] = "sample",
        n_samples: int = 1,
        covariates: dict[str, torch.Tensor | None] | None = None,
        batch_size: int | None = None,
        var: pd.DataFrame | None = None,
    ) -> AnnData:
        """Decode ``z`` into an AnnData of cells, one row per row of ``z``, in minibatches.

        ``.X`` holds the output space of :meth:`_to_output_space`; with one count draw per
        cell the counts go to ``layers["counts"]``. ``var`` defaults to the registered genes.
        """
        import anndata

        if values not in OUTPUT_VALUES:
            raise ValueError(f"values must be 'sample' or 'mean', got {values!r}.")
        covariates = {key: value for key, value in (covariates or {}).items() if value is not None}
        step = batch_size or settings.batch_size
        blocks, counts = [], []
        for start in range(0, z.shape[0], step):
            rows = slice(start, start + step)
            px, expression = self.module.decode(
                z[rows],
                log_library[rows],
                None if condition is None else condition[rows],
                **{key: value[rows] for key, value in covariates.items()},
            )
            block, block_counts = self._to_output_space(px, expression, values, n_samples)
            blocks.append(block)
            if block_counts is not None:
                counts.append(block_counts)
        result = anndata.AnnData(
            X=np.concatenate(blocks).astype(np.float32),
            obs=obs,
            var=pd.DataFrame(index=self._registered_var_names()) if var is None else var,
        )
        if counts:
            result.layers["counts"] = np.concatenate(counts).astype(np.float32)
        return result

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
        if not self.module.is_count_model:
            out = px.sample((n_samples,)).mean(0) if values == "sample" else expression
            return out.cpu().numpy(), None
        draws = px.sample((n_samples if values == "sample" else 1,))
        counts = draws[0].cpu().numpy() if len(draws) == 1 else None
        if values == "mean":
            return torch.log1p(expression * NORMALIZED_TARGET_SUM).cpu().numpy(), counts
        normalised = draws / draws.sum(-1, keepdim=True).clamp(min=1.0) * NORMALIZED_TARGET_SUM
        return torch.log1p(normalised).mean(0).cpu().numpy(), counts

    def _registered_var_names(self) -> pd.Index:
        return pd.Index(self.adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY).column_names)

    def _component_ids(self, components: Sequence[int | str] | None) -> list[int]:
        """Component ids of ``components`` (ids or label names); all components by default."""
        n_components = self.module.n_components
        if components is None:
            return list(range(n_components))
        if isinstance(components, str | int):
            components = [components]
        labels = self.label_names
        ids = []
        for component in components:
            if isinstance(component, str):
                if component not in labels:
                    raise ValueError(
                        f"Component {component!r} is not a registered label; use one of "
                        f"{labels} or a component id in 0..{n_components - 1}."
                    )
                ids.append(labels.index(component))
            elif 0 <= int(component) < n_components:
                ids.append(int(component))
            else:
                raise ValueError(
                    f"Component ids must lie in 0..{n_components - 1}, got {component}."
                )
        return ids

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
