"""Lightning glue: training modules, the fit/evaluate helpers and the parent (baseline) cache."""

from coresetlab.lit.modules import ClassifierModule, MatchingModule
from coresetlab.lit.parents import get_parent, parent_key
from coresetlab.lit.training import evaluate, fit_module

__all__ = ["ClassifierModule", "MatchingModule", "evaluate", "fit_module", "get_parent", "parent_key"]
