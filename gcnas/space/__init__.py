"""Search spaces over the global context framework and insertion positions (YAML in ``search_spaces/``).

Parts: ``readers`` (YAML to a validated space), ``sampling`` (a trial to an architecture), ``enumeration`` (listing
and counting), ``conditions`` (the one rule for which design keys a draw holds); ``space`` holds the class.
"""
from gcnas.arch import paper_default_architecture  # re-exported: the search enqueues it beside the space's draws
from gcnas.space.keys import DESIGN_KEYS, TRAINING_KEYS
from gcnas.space.readers import SearchSpaceError
from gcnas.space.sampling import InfeasibleArchitecture
from gcnas.space.space import SearchSpace

__all__ = ["SearchSpace", "SearchSpaceError", "InfeasibleArchitecture", "DESIGN_KEYS", "TRAINING_KEYS",
           "paper_default_architecture"]
