"""Experiment tracking (layer 7): W&B runs per trial and per study.

Training never depends on it: with ``wandb.mode=disabled``, or W&B down, searches and training run the same.
"""
from gcnas.track.config import WandbConfig
from gcnas.track.wandb_tracker import MODES, TrackingWarning, WandbSession, WandbTracker, check_wandb_config

__all__ = ["WandbTracker", "WandbSession", "WandbConfig", "TrackingWarning", "MODES", "check_wandb_config"]
