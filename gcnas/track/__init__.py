"""Experiment tracking (layer 7): W&B runs per trial and per study, and a reader for offline runs.

Training never depends on it: with ``wandb.mode=disabled``, or W&B down, searches and training run the same.
"""
from gcnas.track.offline import OfflineRun, offline_runs, read_offline_run
from gcnas.track.wandb_tracker import MODES, TrackingWarning, WandbSession, WandbTracker, check_wandb_config

__all__ = ["WandbTracker", "WandbSession", "TrackingWarning", "MODES", "check_wandb_config", "OfflineRun", "read_offline_run",
           "offline_runs"]
