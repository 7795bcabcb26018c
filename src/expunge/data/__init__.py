"""Data layer: in-memory datasets with stable IDs, built-in offline datasets, user data and forget-set rules."""
from expunge.data.base import ArrayDataset, ForgetSet, Split
from expunge.data.datasets import DATASETS, dataset_info, load_dataset
from expunge.data.forget import (
    class_forget,
    ids_forget,
    parse_forget_rule,
    predicate_forget,
    random_forget,
    subclass_forget,
)
from expunge.data.user import as_dataset, make_split

__all__ = [
    "ArrayDataset",
    "Split",
    "ForgetSet",
    "load_dataset",
    "dataset_info",
    "DATASETS",
    "as_dataset",
    "make_split",
    "random_forget",
    "class_forget",
    "subclass_forget",
    "ids_forget",
    "predicate_forget",
    "parse_forget_rule",
]
