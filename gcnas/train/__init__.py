"""Training: proxy training for the search (few epochs on a subset), with a per-epoch callback."""
from gcnas.train.proxy import EpochResult, NonFiniteLossError, TrainResult, evaluate, train_proxy

__all__ = ["train_proxy", "evaluate", "TrainResult", "EpochResult", "NonFiniteLossError"]
