"""The mixins the GMVAE models are built from, one concern each."""

from ._expression_mixin import ExpressionMixin
from ._generation_mixin import GenerationMixin
from ._latent_mixin import LatentMixin
from ._perturbation_mixin import PerturbationMixin
from ._response_mixin import ResponseMixin
from ._training_mixin import GMVAETrainingMixin

__all__ = [
    "ExpressionMixin",
    "GMVAETrainingMixin",
    "GenerationMixin",
    "LatentMixin",
    "PerturbationMixin",
    "ResponseMixin",
]
