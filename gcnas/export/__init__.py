"""Export (layer 7): a trial as architecture.yaml + model.safetensors + model.onnx + MODEL_CARD.md."""
from gcnas.export.export import ExportResult, choose_trial, export_trial, open_study

__all__ = ["export_trial", "ExportResult", "choose_trial", "open_study"]
