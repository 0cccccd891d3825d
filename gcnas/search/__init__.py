"""The search: Optuna studies over a search space, one Hydra job per worker (docs/architecture.md, "Hydra multirun ×
Optuna").

Layer 6: imports optuna, and the layers below; never hydra (the CLI composes the config) or wandb.
"""
from gcnas.search.study import make_storage, make_study, redact_url
from gcnas.search.worker import SearchResult, run_search

__all__ = ["run_search", "SearchResult", "make_storage", "make_study", "redact_url"]
