"""Reports of a study (layer 7): Optuna's plots, the placements of the top trials, a Markdown summary."""
from gcnas.report.report import Report, placement_counts, write_report

__all__ = ["Report", "write_report", "placement_counts"]
