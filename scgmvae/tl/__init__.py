from ._clusters import clustering_scores, map_components
from ._de import rank_genes_groups
from ._distances import (
    energy_distance,
    mmd,
    perturbation_distances,
    scaled_energy_distance,
    shared_pca,
)
from ._embed import embed
from ._expression import log_normalize
from ._generation import generation_scores
from ._leiden import leiden_clusters, leiden_guided_train
from ._perturbation import (
    evaluate_perturbation,
    noise_ceiling,
    pooled_response,
    top_degs,
    type_responses,
)

__all__ = [
    "clustering_scores",
    "embed",
    "energy_distance",
    "evaluate_perturbation",
    "generation_scores",
    "leiden_clusters",
    "leiden_guided_train",
    "log_normalize",
    "map_components",
    "mmd",
    "noise_ceiling",
    "perturbation_distances",
    "pooled_response",
    "rank_genes_groups",
    "scaled_energy_distance",
    "shared_pca",
    "top_degs",
    "type_responses",
]
