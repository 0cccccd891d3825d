"""Datasets for training: Fashion-MNIST, CIFAR-10, an image folder, a generated context task and a synthetic task for
tests.

``load_data(cfg)`` reads a ``data`` config (``conf/data/*.yaml``) into :class:`DataSplits`: training, validation
(held out of the training images, so the search never touches the test split) and test splits, each a
:class:`~gcnas.data.splits.Split` the trainer batches. Its ``in_chans``, ``num_classes`` and ``input_size`` flow into
the backbone.
"""
from gcnas.data.datasets import DATASETS, DataUnavailableError, load_data
from gcnas.data.splits import DataSplits, Split, TensorSplit

__all__ = ["DATASETS", "DataSplits", "DataUnavailableError", "Split", "TensorSplit", "load_data"]
