"""Data layer: in-memory datasets with stable IDs, built-in offline datasets, user data and forget-set rules.

``DATASETS`` and ``FORGET_RULES`` are registries (entry-point groups ``expunge.datasets`` and
``expunge.forget_rules``), so other packages add datasets and forget-rule kinds without editing expunge.
"""
from expunge.data.base import ArrayDataset, ForgetReason, ForgetSet, Split
from expunge.data.datasets import DATASETS, DatasetSpec, dataset_info, load_dataset, register_dataset
from expunge.data.forget import (
    FORGET_RULES,
    ForgetRule,
    author_forget,
    ForgetRuleSyntaxError,
    RuleContext,
    class_forget,
    ids_forget,
    parse_forget_rule,
    predicate_forget,
    random_forget,
    register_forget_rule,
    subclass_forget,
    validate_forget_rule,
)
from expunge.data.user import as_dataset, make_split

__all__ = [
    "ArrayDataset",
    "Split",
    "ForgetSet",
    "ForgetReason",
    "RuleContext",
    "validate_forget_rule",
    "load_dataset",
    "dataset_info",
    "DATASETS",
    "DatasetSpec",
    "register_dataset",
    "as_dataset",
    "make_split",
    "random_forget",
    "class_forget",
    "subclass_forget",
    "ids_forget",
    "author_forget",
    "predicate_forget",
    "parse_forget_rule",
    "FORGET_RULES",
    "ForgetRule",
    "ForgetRuleSyntaxError",
    "register_forget_rule",
]
