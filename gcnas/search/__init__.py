"""The search: Optuna studies over a search space, one Hydra job per worker (docs/architecture.md, "Hydra multirun ×
Optuna").

Layer 6: imports optuna, and the layers below; never hydra (the CLI composes the config) or wandb.

The worker (:func:`run_search`, which needs torch and timm) is imported on first use, so that a command that only
opens a storage, or refuses its input, starts without them.
"""
from gcnas.search.study import make_storage, make_study, redact_url

__all__ = ["run_search", "SearchResult", "make_storage", "make_study", "redact_url"]


def __getattr__(name: str):
    if name in ("run_search", "SearchResult"):
        from gcnas.search import worker

        return getattr(worker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
