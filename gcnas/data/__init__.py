"""Datasets for proxy training: Fashion-MNIST, CIFAR-10, an image folder, and a synthetic task for tests.

Every dataset loads into memory as float tensors (normalised per channel) with a held-out validation split taken from
the training data, so proxy training never touches the test split. ``load_data(cfg)`` reads a ``data`` config
(``conf/data/*.yaml``); its ``in_chans``, ``num_classes`` and ``input_size`` flow into the backbone.
"""
from gcnas.data.datasets import DATASETS, DataSplits, DataUnavailableError, load_data

__all__ = ["DATASETS", "DataSplits", "DataUnavailableError", "load_data"]
