"""Training: proxy training for the search (few epochs on a subset) and full-fidelity, resumable training."""
from gcnas.train.full import FullTrainResult, evaluate_amp, train_full
from gcnas.train.proxy import EpochResult, NonFiniteLossError, TrainResult, evaluate, train_proxy

__all__ = ["train_proxy", "evaluate", "TrainResult", "EpochResult", "NonFiniteLossError", "train_full",
           "FullTrainResult", "evaluate_amp"]
