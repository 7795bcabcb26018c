"""expunge: machine unlearning for PyTorch, audited against populations of retrained models.

Quick use::

    import expunge
    unlearned, cost = expunge.unlearn(model, forget=(x_f, y_f), retain=(x_r, y_r), method="salun")
"""
from expunge._version import __version__ as __version__
from expunge.api import unlearn
from expunge.bench.audit import AuditReport, audit
from expunge.data import ForgetSet, Split, load_dataset
from expunge.errors import ExpungeError
from expunge.methods.registry import available_methods, unlearn_population
from expunge.training.cost import Cost
from expunge.training.engine import train_population
from expunge.training.population import Population
from expunge.training.recipe import Recipe, default_recipe
from expunge.training.scenario import Scenario
from expunge.training.store import load_population, save_population

__all__ = [
    "AuditReport", "Cost", "ExpungeError", "ForgetSet", "Population", "Recipe", "Scenario", "Split", "audit", "available_methods",
    "default_recipe", "load_dataset", "load_population", "save_population", "train_population", "unlearn",
    "unlearn_population",
]
