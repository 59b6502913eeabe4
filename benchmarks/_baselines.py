"""Model-free rows of the perturbation benchmark: baselines without a VAE and the noise ceiling.

Every baseline works in gene space, on log1p CP10k of the training cells, and returns an
AnnData of the held-out type's control cells shifted by a response vector (log1p CP10k, the
control cells' ``obs`` and ``var``), like the peers' predictions. A type's *response* is the mean
of its stimulated cells minus the mean of its control cells; only types with both conditions in
the training cells count (so never the held-out type, whose stimulated cells are held out).

- :func:`pooled_shift` (scPerturBench's trainMean): the control cells plus the mean of the other
  types' responses, each type weighted equally.
- :func:`similarity_weighted_shift`: the control cells plus a weighted mean of the other types'
  responses; the weights are a softmax of ``r / 0.05`` (:data:`SIMILARITY_TEMPERATURE`), where
  ``r`` is the Pearson correlation, over the genes, of the type's control mean with the held-out
  type's control mean (log1p CP10k). A type whose control cells correlate 0.05 less weighs e
  times less.
- :func:`nearest_type_shift`: the response of the most similar type alone (the limit of the rule
  above for a small temperature; how issue 23 measured the "similarity-weighted shift").
- :func:`quantile_shift` (held-out donors, where the type is seen under both conditions): each
  control cell moved, gene by gene, by the type's quantile response in the training cells (the
  change of the type's quantile function from control to stimulated, at the cell's level),
  with the package's own quantile map (``scgmvae.model.base._quantiles``) and no model: what
  CGMVAE's default route does for a type whose cells it has seen under both conditions.
- :func:`borrowing_bound`: not a baseline but a reference row, which looks at the answer: the
  control cells plus the non-negative combination of the other types' responses that comes
  closest to the held-out type's real response (least squares over all genes; the weights need
  not sum to 1). No method that predicts a held-out type by mixing the responses of the others
  gets closer to the real mean response; the distance from it to the noise ceiling is the part
  of the response that no other type shows.

Predictions are not clipped at zero: clipping would bias the means the scores compare.
"""

from __future__ import annotations

import anndata
import numpy as np
import pandas as pd
import torch
from scipy import sparse
from scipy.optimize import nnls

from scgmvae.model.base._quantiles import move_by_quantiles, quantile_function, quantile_levels
from scgmvae.tl import log_normalize, type_responses

SIMILARITY_TEMPERATURE = 0.05
"""Temperature of the softmax over the Pearson r of control means: a type whose control mean
correlates 0.05 less with the held-out type's weighs e times less (fixed before any scores were
seen; with it the 2-3 most similar types carry most of the weight)."""


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.toarray() if sparse.issparse(matrix) else matrix, dtype=np.float64)


class Responses:
    """Per-type control means and responses of the training cells, in log1p CP10k.

    Parameters
    ----------
    train
        Training cells (raw counts or log1p CP10k) with the condition and the type in obs.
    control
        The held-out type's control cells (the input of the prediction), same genes.
    condition_key, ctrl, stim, label_key
        Where the condition and the cell type are, and the condition values.
    """

    def __init__(
        self,
        train: anndata.AnnData,
        control: anndata.AnnData,
        condition_key: str = "condition",
        ctrl: str = "control",
        stim: str = "stimulated",
        label_key: str = "cell_type",
    ):
        self.responses = type_responses(train, condition_key, ctrl, stim, label_key)
        self.types = list(self.responses.index)
        self.control_x = _dense(log_normalize(control).X)
        self.control = control
        x = _dense(log_normalize(train).X)
        conditions = train.obs[condition_key].astype(str).to_numpy()
        labels = train.obs[label_key].astype(str).to_numpy()
        ctrl_means = np.stack(
            [x[(labels == t) & (conditions == ctrl)].mean(0) for t in self.types]
        )
        # Pearson r of each type's control mean with the held-out type's, over the genes
        held_out = self.control_x.mean(0)
        self.similarity = pd.Series(
            [np.corrcoef(held_out, mean)[0, 1] for mean in ctrl_means], index=self.types
        )

    @property
    def nearest(self) -> str:
        """The type whose control mean correlates best with the held-out type's."""
        return str(self.similarity.idxmax())

    def similarity_weights(self) -> pd.Series:
        """``softmax(r / SIMILARITY_TEMPERATURE)``: the weights of
        :func:`similarity_weighted_shift`."""
        weights = np.exp((self.similarity - self.similarity.max()) / SIMILARITY_TEMPERATURE)
        return weights / weights.sum()

    def shifted(self, response: np.ndarray, **uns) -> anndata.AnnData:
        """The control cells plus ``response``, in log1p CP10k."""
        return anndata.AnnData(
            X=(self.control_x + response).astype(np.float32),
            obs=self.control.obs.copy(),
            var=self.control.var.copy(),
            uns={"train_seconds": 0.0, **uns},
        )


def pooled_shift(responses: Responses) -> anndata.AnnData:
    """Control cells plus the mean response of the other types, equally weighted (trainMean)."""
    return responses.shifted(responses.responses.to_numpy().mean(0))


def similarity_weighted_shift(responses: Responses) -> anndata.AnnData:
    """Control cells plus the other types' responses, weighted by ``softmax(r / 0.05)``."""
    weights = responses.similarity_weights()
    shift = weights.to_numpy() @ responses.responses.loc[weights.index].to_numpy()
    return responses.shifted(shift, weights=weights.round(4).to_dict())


def nearest_type_shift(responses: Responses) -> anndata.AnnData:
    """Control cells plus the response of the type with the nearest control mean."""
    nearest = responses.nearest
    return responses.shifted(responses.responses.loc[nearest].to_numpy(), nearest_type=nearest)


BASELINES = {
    "pooled shift": pooled_shift,
    "similarity-weighted shift": similarity_weighted_shift,
    "nearest-type shift": nearest_type_shift,
}
"""The model-free rows by name; each maps :class:`Responses` to a prediction."""


def baseline_predictions(train, control, **keys) -> tuple[dict, Responses]:
    """Every baseline's prediction of the held-out type, and the responses behind them."""
    responses = Responses(train, control, **keys)
    return {name: make(responses) for name, make in BASELINES.items()}, responses


def quantile_shift(
    train: anndata.AnnData,
    control: anndata.AnnData,
    cell_type: str,
    seed: int,
    condition_key: str = "condition",
    ctrl: str = "control",
    stim: str = "stimulated",
    label_key: str = "cell_type",
) -> anndata.AnnData:
    """The ``control`` cells moved by ``cell_type``'s quantile response in ``train``.

    ``train`` must hold the type under both conditions. Tied cells take their levels in an
    order that ``seed`` fixes. Clipped at zero like CGMVAE's default route, whose move this is.
    """
    x = _dense(log_normalize(train).X)
    of_type = (train.obs[label_key] == cell_type).to_numpy()
    conditions = train.obs[condition_key].to_numpy()
    levels = quantile_levels()
    source, target = (
        quantile_function(
            torch.tensor(x[of_type & (conditions == value)], dtype=torch.float), levels
        )
        for value in (ctrl, stim)
    )
    cells = torch.tensor(_dense(log_normalize(control).X), dtype=torch.float)
    moved = move_by_quantiles(
        cells,
        torch.zeros(len(cells), dtype=torch.long),
        source[None],
        (target - source)[None],
        torch.Generator().manual_seed(seed),
    )
    return anndata.AnnData(
        X=moved.clamp(min=0.0).numpy().astype(np.float32),
        obs=control.obs.copy(),
        var=control.var.copy(),
        uns={"train_seconds": 0.0},
    )


def borrowing_bound(responses: Responses, stimulated: anndata.AnnData) -> anndata.AnnData:
    """Control cells plus the non-negative combination of the other types' responses closest
    to the real response of the held-out type (its ``stimulated`` cells): an upper bound of
    borrowing, which uses the answer."""
    real = _dense(log_normalize(stimulated).X).mean(0) - responses.control_x.mean(0)
    weights, _ = nnls(responses.responses.to_numpy().T, real)
    return responses.shifted(
        weights @ responses.responses.to_numpy(),
        weights=dict(zip(responses.types, weights.round(4), strict=True)),
    )
