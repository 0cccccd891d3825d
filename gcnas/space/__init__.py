"""Search spaces over the global context framework and insertion positions (YAML in ``search_spaces/``)."""
from gcnas.arch import paper_default_architecture  # re-exported: the search enqueues it beside the space's draws
from gcnas.space.space import DESIGN_KEYS, TRAINING_KEYS, InfeasibleArchitecture, SearchSpace, SearchSpaceError

__all__ = ["SearchSpace", "SearchSpaceError", "InfeasibleArchitecture", "DESIGN_KEYS", "TRAINING_KEYS",
           "paper_default_architecture"]
