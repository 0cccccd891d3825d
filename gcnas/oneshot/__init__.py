"""One-shot search: a weight-sharing supernet over the global-context space (see :mod:`gcnas.oneshot.supernet`)."""
from gcnas.oneshot.supernet import ChoiceBlock, Supernet, check_supernet_designs

__all__ = ["ChoiceBlock", "Supernet", "check_supernet_designs"]
