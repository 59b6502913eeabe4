from ._clusters import clustering_scores, map_components
from ._de import rank_genes_groups
from ._distances import energy_distance, mmd, perturbation_distances, shared_pca
from ._embed import embed
from ._leiden import leiden_clusters, leiden_guided_train
from ._perturbation import evaluate_perturbation, log_normalize, top_degs

__all__ = [
    "clustering_scores",
    "embed",
    "energy_distance",
    "evaluate_perturbation",
    "leiden_clusters",
    "leiden_guided_train",
    "log_normalize",
    "map_components",
    "mmd",
    "perturbation_distances",
    "rank_genes_groups",
    "shared_pca",
    "top_degs",
]
