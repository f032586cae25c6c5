"""Data layer: canonical schema, readers, vocabularies, matrices and splits."""

from recsys.data.amazon import load_amazon_scientific
from recsys.data.dataset import Dataset
from recsys.data.io import load_files, read_interactions, read_items, scan_table
from recsys.data.split import (
    Split,
    all_interactions,
    cold_items,
    cold_start_split,
    label_split,
    leave_one_out,
    make_split,
    temporal_split,
    without_items,
)
from recsys.data.synthetic import SyntheticConfig, synthetic_dataset
from recsys.data.train_data import TrainData
from recsys.data.vocab import IdVocab

DATASETS = {"amazon-scientific": load_amazon_scientific}

__all__ = [
    "DATASETS",
    "Dataset",
    "IdVocab",
    "Split",
    "SyntheticConfig",
    "TrainData",
    "all_interactions",
    "cold_items",
    "cold_start_split",
    "label_split",
    "leave_one_out",
    "load_amazon_scientific",
    "load_files",
    "make_split",
    "read_interactions",
    "read_items",
    "scan_table",
    "synthetic_dataset",
    "temporal_split",
    "without_items",
]
