"""Search spaces over the global context framework and insertion positions (YAML in ``search_spaces/``)."""
from gcnas.space.space import (DESIGN_KEYS, TRAINING_KEYS, InfeasibleArchitecture, SearchSpace, SearchSpaceError,
                               paper_default_architecture)

__all__ = ["SearchSpace", "SearchSpaceError", "InfeasibleArchitecture", "DESIGN_KEYS", "TRAINING_KEYS",
           "paper_default_architecture"]
