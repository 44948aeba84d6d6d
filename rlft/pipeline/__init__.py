"""Running a recipe: stage order, fingerprints and caching, resume, one process per stage.

``run_pipeline(recipe, source=...)`` runs a recipe; ``plan_status`` says per stage what a run would do;
``rlft.pipeline.checks.check_recipe`` checks a recipe deeply (TRL configs, rewards, this machine) first.
"""

from rlft.pipeline.run import plan_status, run_pipeline

__all__ = ["plan_status", "run_pipeline"]
