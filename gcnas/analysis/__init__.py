"""The paper's analysis (layer 7): NL query-position statistics, attention figures, design comparisons."""
from gcnas.analysis.heatmaps import attention_figure, attention_maps, default_queries
from gcnas.analysis.nl_stats import NLStats, nl_blocks, nl_statistics, pairwise_cosine_distance
from gcnas.analysis.recipes import recipe_rows, recipe_table
from gcnas.analysis.run import DESIGNS, AnalysisResult, design_architecture, run_analysis

__all__ = ["NLStats", "nl_statistics", "nl_blocks", "pairwise_cosine_distance", "attention_maps",
           "attention_figure", "default_queries", "DESIGNS", "AnalysisResult", "run_analysis",
           "design_architecture", "recipe_rows", "recipe_table"]
