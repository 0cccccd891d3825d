"""Training: one loop (:func:`fit`) whose fidelity is configuration (:class:`TrainerConfig`: ``trainer=proxy`` for
search trials, ``trainer=full`` for retraining), DistributedDataParallel under torchrun, the device and threads."""
from gcnas.train.config import TrainerConfig
from gcnas.train.loop import EpochResult, NonFiniteLossError, TrainResult, check_checkpoint, evaluate, fit

__all__ = ["fit", "check_checkpoint", "evaluate", "TrainerConfig", "TrainResult", "EpochResult", "NonFiniteLossError"]
