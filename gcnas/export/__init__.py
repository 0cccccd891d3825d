"""Export (layer 7): a trial as architecture.yaml + model.safetensors + config.json (timm's, with the study's
preprocessing) + model.onnx + MODEL_CARD.md, and retraining an exported architecture at full fidelity (what gcnas-train
runs)."""
from gcnas.export.export import ExportResult, choose_trial, export_trial
from gcnas.export.retrain import TrainReport, load_architecture, retrain

__all__ = ["export_trial", "ExportResult", "choose_trial", "retrain", "TrainReport", "load_architecture"]
