"""Names and numbers shared by the module and the models."""

from __future__ import annotations

import math
from typing import Literal

from scvi import REGISTRY_KEYS

GeneLikelihood = Literal["nb", "zinb", "poisson", "normal", "bernoulli"]
COUNT_LIKELIHOODS = ("nb", "zinb", "poisson")
LIKELIHOODS = (*COUNT_LIKELIHOODS, "normal", "bernoulli")
WPrior = Literal["fixed", "learned"]
W_PRIORS = ("fixed", "learned")
ConditionEffect = Literal["network", "shift"]
CONDITION_EFFECTS = ("network", "shift")
Dispersion = Literal["gene", "gene-cell"]
DISPERSIONS = ("gene", "gene-cell")
DISPERSION_LIKELIHOODS = ("nb", "zinb")
"""The likelihoods with a dispersion (the negative binomials)."""

CONDITION_KEY = "condition"
"""Registry key of the condition field (CGMVAE)."""

# keys of the inference and generative outputs beyond scvi-tools' MODULE_KEYS
QW_KEY = "qw"
W_KEY = "w"
PROBS_Y_KEY = "probs_y"
QD_KEY = "qd"
D_KEY = "d"
PZ_MEANS_KEY = "pz_means"
PZ_VARS_KEY = "pz_vars"
PW_KEY = "pw"

PROB_FLOOR = 1e-8
"""Probabilities and Dirichlet draws are clamped to this before taking logs."""
MAX_LOG_CONCENTRATION = math.log(1e3)
"""Dirichlet concentrations stay in ``[1e-3, 1e3]``: sampling is unstable outside."""
NORMAL_VARIANCE_FLOOR = 1e-3
"""Smallest gene-wise variance of the ``"normal"`` likelihood (thesis §4.2.8)."""
LOG_DISPERSION_BOUND = 12.0
"""The negative-binomial log dispersion is clamped to ``[-12, 12]``."""
DEFAULT_LATENT_BOUND = 10.0
"""Means of ``z``, ``w`` and the mixture components stay in ``(-10, 10)``."""
DEFAULT_LOG_VAR_BOUND = 9.0
"""Log variances stay in ``(-9, 9)``."""

# scvi-tools' names of the tensors the module reads, and the module's own output names
X, LABELS = REGISTRY_KEYS.X_KEY, REGISTRY_KEYS.LABELS_KEY
BATCH, CAT_COVS, CONT_COVS = (
    REGISTRY_KEYS.BATCH_KEY,
    REGISTRY_KEYS.CAT_COVS_KEY,
    REGISTRY_KEYS.CONT_COVS_KEY,
)
QZ, Z, LIBRARY, PX = "qz", "z", "library", "px"
