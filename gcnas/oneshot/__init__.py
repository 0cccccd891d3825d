"""One-shot search: a weight-sharing supernet over the global-context space (docs/oneshot.md).

:mod:`gcnas.oneshot.supernet` holds the supernet, :mod:`gcnas.oneshot.train` trains it (single-path, uniform or fair)
and scores architectures with inherited weights (validation accuracy, the blocks' gradient, or both
readings placed among a reference sample's). The words of its config keys (``search.supernet_sampling``,
``supernet_score``, ``supernet_share``: :data:`SAMPLINGS`, :data:`SCORES`, :data:`SHARES`) are declared with the
config, in :mod:`gcnas.sections`, which composing a config imports without torch.
"""
from gcnas.oneshot.supernet import ChoiceBlock, Supernet, check_supernet_designs
from gcnas.oneshot.train import (SAMPLINGS, SCORES, PathSampler, ScoreReference, block_parameters,
                                 gradient_and_loss, gradient_and_loss_score, gradient_score, loss_gradients,
                                 recalibrate_batchnorm, reference_architectures, score, score_with_loss,
                                 smooth_percentile, supernet_for_space, train_supernet)
from gcnas.sections import SHARES

__all__ = ["SHARES", "ChoiceBlock", "Supernet", "check_supernet_designs", "SAMPLINGS", "SCORES", "PathSampler",
           "supernet_for_space", "train_supernet", "score", "score_with_loss", "gradient_score",
           "block_parameters", "loss_gradients", "recalibrate_batchnorm", "ScoreReference", "reference_architectures",
           "smooth_percentile", "gradient_and_loss", "gradient_and_loss_score"]
