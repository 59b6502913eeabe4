from ._trainingplans import GMVAETrainingPlan

__all__ = ["GMVAETrainingPlan"]
