from ._cluster_init import ClusterInit
from ._datasplitter import GMVAEDataSplitter
from ._trainingplans import GMVAETrainingPlan

__all__ = ["ClusterInit", "GMVAEDataSplitter", "GMVAETrainingPlan"]
