from ._datasplitter import GMVAEDataSplitter
from ._trainingplans import GMVAETrainingPlan

__all__ = ["GMVAEDataSplitter", "GMVAETrainingPlan"]
