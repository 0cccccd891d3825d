"""Training: proxy training for the search (few epochs on a subset) and full-fidelity, resumable training."""
from gcnas.train.full import FullTrainResult, evaluate_amp, train_full
from gcnas.train.proxy import EpochResult, NonFiniteLossError, TrainResult, evaluate, proxy_kwargs, train_proxy

__all__ = ["train_proxy", "proxy_kwargs", "evaluate", "TrainResult", "EpochResult", "NonFiniteLossError", "train_full",
           "FullTrainResult", "evaluate_amp"]
