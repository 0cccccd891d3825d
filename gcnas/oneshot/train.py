"""Training a supernet with single-path uniform sampling, and scoring architectures with the weights they inherit.

* :func:`supernet_for_space`: the :class:`~gcnas.oneshot.supernet.Supernet` that holds every design a search space can
  place, at every site it can place one (what a space the supernet cannot hold breaks is said naming the key).
* :func:`train_supernet`: :func:`gcnas.train.fit` itself (same optimiser, schedule, data order, callbacks,
  resumable checkpoints) over a supernet that runs a fresh uniform draw of the space, :class:`PathSampler`, for every
  training batch (single-path one-shot, Guo et al. 2020), or a fairer draw that trains every design equally often
  (``sampling="fair"``, after FairNAS's strict fairness). The draws of epoch ``e`` come from a generator seeded by
  ``(seed, e)``, so a training resumed after epoch ``e - 1`` draws the paths an uninterrupted one would have.
* :func:`score`: one architecture on the validation data with inherited weights, after recalibrating every BatchNorm's
  statistics on a few training batches for that architecture alone (the shared statistics belong to no single path).
* :func:`gradient_score`: the blocks' first-order gain instead: how steeply the training loss falls when only the
  architecture's blocks train, from the inherited weights (``search.supernet_score=gradient``; docs/oneshot.md).
* :func:`gradient_and_loss_score`: the gradient's and the validation loss's standings among a fixed reference sample
  of the space (:class:`ScoreReference`), added (``search.supernet_score=gradient_and_loss``).

Layer: one-shot (imports blocks, backbones, architecture, space, data and train; never optuna, hydra or wandb).
"""
from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from gcnas.arch import Architecture
from gcnas.backbones.weights import BackboneWeights
from gcnas.compat import BatchNormBase
from gcnas.errors import ConfigError
from gcnas.oneshot.supernet import Supernet, check_supernet_designs
from gcnas.sections import SAMPLINGS, SCORES  # search.supernet_sampling and supernet_score: declared with the config
from gcnas.space import InfeasibleArchitecture, SearchSpace
from gcnas.data import DataSplits, Split
from gcnas.train import TrainResult, evaluate, fit

__all__ = ["SAMPLINGS", "SCORES", "PathSampler", "supernet_for_space", "train_supernet", "score", "score_with_loss",
           "gradient_score", "block_parameters", "loss_gradients", "recalibrate_batchnorm", "ScoreReference",
           "reference_architectures", "smooth_percentile", "gradient_and_loss", "gradient_and_loss_score"]


class _RandomTrial:
    """A trial-like object drawing every parameter uniformly (what Optuna's RandomSampler does), from one RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def suggest_categorical(self, name: str, choices: Sequence) -> Any:
        return self.rng.choice(list(choices))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        if log:
            return int(round(math.exp(self.rng.uniform(math.log(low), math.log(high)))))
        return self.rng.randrange(low, high + 1, step)

    def suggest_float(self, name: str, low: float, high: float, step: Optional[float] = None,
                      log: bool = False) -> float:
        if step is not None:
            return low + step * self.rng.randrange(int(round((high - low) / step)) + 1)
        if log:
            return math.exp(self.rng.uniform(math.log(low), math.log(high)))
        return self.rng.uniform(low, high)


class _FairTrial(_RandomTrial):
    """A :class:`_RandomTrial` whose design parameters come from the next design of each prefix's cycle."""

    def __init__(self, rng: random.Random, heads: Mapping[str, dict[str, Any]]) -> None:
        super().__init__(rng)
        self.heads = heads  # prefix -> the assignment of the design this draw places there
        self.used: set[str] = set()  # prefixes whose design the space asked for (a stage left out asks none)

    def _head(self, name: str) -> tuple[bool, Any]:
        prefix, _, key = name.rpartition(".")
        head = self.heads.get(prefix)
        if head is None or key not in head:
            return False, None
        self.used.add(prefix)
        return True, head[key]

    def suggest_categorical(self, name: str, choices: Sequence) -> Any:
        found, value = self._head(name)
        return value if found else super().suggest_categorical(name, choices)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        found, value = self._head(name)
        return value if found else super().suggest_int(name, *args, **kwargs)

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        found, value = self._head(name)
        return value if found else super().suggest_float(name, *args, **kwargs)


class PathSampler:
    """Draws of a search space's architectures (infeasible draws are drawn again), reproducible by seed;
    :meth:`start_epoch` restarts the draws from ``(seed, epoch)``, so each epoch's paths depend on nothing earlier.

    ``sampling="uniform"`` draws every parameter uniformly, as Optuna's RandomSampler does; designs then come up as
    often as their parameters make them (in ``gc_full`` each ``conv`` design, with no ratio and no norm to draw, comes
    up 6 times as often as each bottleneck design). ``sampling="fair"`` (FairNAS's strict fairness, over designs): each
    design slot of the space (``design``, or each stage's when designs are per stage) goes through the space's
    designs in a shuffled order, a new shuffle when all have had their turn, so over every round each design is
    trained equally often; stages and positions are still drawn uniformly. A design whose draw breaks the limits is
    kept for the next draw, not skipped (a space whose ``none`` design can never meet ``limits.min_blocks`` leaves it
    out of the round).
    """

    def __init__(self, space: SearchSpace, seed: int = 0, max_tries: int = 1000, sampling: str = "uniform") -> None:
        if sampling not in SAMPLINGS:
            raise ConfigError(f"search.supernet_sampling: must be one of {', '.join(SAMPLINGS)}; got {sampling!r}")
        self.space, self.seed, self.rng, self.max_tries = space, seed, random.Random(seed), max_tries
        self.sampling = sampling
        self._rounds: dict[str, list[dict[str, Any]]] = {}
        if sampling == "fair":
            choices = space.design_choices()
            if space.min_blocks > 0:  # "none" places nothing, so it could never be drawn
                choices = [(spec, a) for spec, a in choices if spec is not None]
            self._designs = [a for _, a in choices]

    def start_epoch(self, epoch: int) -> None:
        self.rng = random.Random(f"{self.seed}:{epoch}")  # str seeds are hashed stably (not by hash())
        self._rounds = {}

    def _heads(self) -> dict[str, dict[str, Any]]:
        heads = {}
        for prefix in self.space.design_prefixes():
            queue = self._rounds.setdefault(prefix, [])
            if not queue:
                queue.extend(self.rng.sample(self._designs, len(self._designs)))
            heads[prefix] = queue[0]
        return heads

    def __call__(self) -> Architecture:
        for _ in range(self.max_tries):
            heads = self._heads() if self.sampling == "fair" else None
            trial = _RandomTrial(self.rng) if heads is None else _FairTrial(self.rng, heads)
            try:
                arch = self.space.suggest(trial)
            except InfeasibleArchitecture:
                continue
            for prefix in getattr(trial, "used", ()):  # these designs had their turn
                self._rounds[prefix].pop(0)
            return arch
        raise ConfigError(f"{self.space.source}: limits: {self.max_tries} draws were all infeasible; "
                          "loosen limits.min_blocks / limits.max_blocks")


def supernet_for_space(space: SearchSpace, share: str = "site", weights: Optional[BackboneWeights] = None) -> Supernet:
    """The supernet holding every design of ``space`` at every site it can reach (``share``, ``weights``: see
    :class:`~gcnas.oneshot.supernet.Supernet`); refuses what it cannot hold."""
    if space.training:
        raise ConfigError(f"{space.source}: training: a supernet is trained once, with the trainer config; it cannot "
                          f"search training hyperparameters ({', '.join(sorted(space.training))}). Drop the section "
                          "or use search.method=standalone")
    if True in (space.replace.values() or []):
        raise ConfigError(f"{space.source}: positions.replace: a supernet keeps the backbone's own attention "
                          "modules; replace=true needs search.method=standalone")
    specs = check_supernet_designs(space.designs())
    sites = space.reachable_sites()
    return Supernet(space.backbone, space.backbone_kwargs, space.sites, specs, site_keys=[s.key for s in sites],
                    share=share, weights=weights)


class _SamplePerBatch:
    """Forward pre-hook: in training mode, a fresh path before every batch."""

    def __init__(self, net: Supernet, sampler: Callable[[], Architecture]) -> None:
        self.net, self.sampler, self.paths = net, sampler, 0

    def __call__(self, module: nn.Module, inputs: Any) -> None:
        if module.training:
            self.net.set_architecture(self.sampler())
            self.paths += 1


def train_supernet(net: Supernet, sampler: Callable[[], Architecture], data: DataSplits, trainer: Mapping[str, Any],
                   **fit_kwargs: Any) -> tuple[TrainResult, int]:
    """Train ``net`` on ``data`` with :func:`gcnas.train.fit` (``trainer``: its recipe; ``fit_kwargs``: seed, device,
    ckpt_dir, on_epoch), one path from ``sampler`` per training batch; returns its result and the number of paths
    trained in this call. The per-epoch validation runs the last path drawn. With ``ckpt_dir`` every epoch is
    checkpointed there and a training found there resumes after its last finished epoch; a :class:`PathSampler`
    restarts its draws at every epoch (:meth:`PathSampler.start_epoch`), so the resumed training equals an
    uninterrupted one."""
    hook = _SamplePerBatch(net, sampler)
    handle = net.register_forward_pre_hook(hook)
    try:
        result = fit(net, data, trainer, test=False, on_epoch_start=getattr(sampler, "start_epoch", None),
                     **fit_kwargs)
    finally:
        handle.remove()
    return result, hook.paths


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int = 128,
                          device: torch.device | str = "cpu") -> None:
    """Reset every BatchNorm's running statistics and re-estimate them (a plain average) over ``x``."""
    norms = [m for m in model.modules() if isinstance(m, BatchNormBase)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    was_training = model.training
    model.train()
    try:
        for i in range(0, len(x), batch_size):
            if len(x[i:i + batch_size]) > 1:
                model(x[i:i + batch_size].to(device))
    finally:
        for m, mom in zip(norms, momenta):
            m.momentum = mom
        model.train(was_training)


def score_with_loss(net: Supernet, arch: Architecture, calib_x: torch.Tensor, val: Split, batch_size: int = 128,
                    device: torch.device | str = "cpu") -> tuple[float, float]:
    """(validation accuracy, validation loss) of ``arch`` with the supernet's weights, BatchNorm recalibrated on
    ``calib_x`` first. The loss ranks architectures a saturated supernet scores alike."""
    net.set_architecture(arch)
    recalibrate_batchnorm(net, calib_x, batch_size, device)
    loss, acc = evaluate(net, val, batch_size=max(batch_size, 256), device=device)
    return acc, loss


def score(net: Supernet, arch: Architecture, calib_x: torch.Tensor, val: Split, batch_size: int = 128,
          device: torch.device | str = "cpu") -> float:
    """Validation accuracy of ``arch`` with the supernet's weights, BatchNorm recalibrated on ``calib_x`` first."""
    return score_with_loss(net, arch, calib_x, val, batch_size, device)[0]


def block_parameters(net: Supernet) -> list[nn.Parameter]:
    """The trainable weights of the blocks the supernet's current architecture runs, each once (a tensor shared by
    several sites, ``share="stage"``, counts once)."""
    params = {id(p): p for block in net.choices.values() if block.active is not None for p in block.parameters()}
    return [p for p in params.values() if p.requires_grad]


def loss_gradients(net: Supernet, arch: Architecture, params: Sequence[nn.Parameter], calib_x: torch.Tensor,
                   calib_y: torch.Tensor, batch_size: int = 128,
                   device: torch.device | str = "cpu") -> list[Optional[torch.Tensor]]:
    """The gradient of the mean cross-entropy on ``(calib_x, calib_y)`` with respect to each of ``params`` (``None``
    where ``arch`` does not use it), with BatchNorm recalibrated on ``calib_x`` for ``arch`` and then in eval mode (the
    gradient goes through the recalibrated statistics). Leaves no gradient behind."""
    net.set_architecture(arch)
    recalibrate_batchnorm(net, calib_x, batch_size, device)
    grads: list[Optional[torch.Tensor]] = [None] * len(params)
    if not params:
        return grads
    was_training = net.training
    net.eval()
    try:
        n = len(calib_x)
        for i in range(0, n, batch_size):
            xb, yb = calib_x[i:i + batch_size].to(device), calib_y[i:i + batch_size].to(device)
            loss = nn.functional.cross_entropy(net(xb), yb, reduction="sum") / n
            for j, g in enumerate(torch.autograd.grad(loss, list(params), allow_unused=True)):
                if g is not None:
                    grads[j] = g if grads[j] is None else grads[j] + g
    finally:
        net.train(was_training)
    return grads


def gradient_score(net: Supernet, arch: Architecture, calib_x: torch.Tensor, calib_y: torch.Tensor,
                   batch_size: int = 128, device: torch.device | str = "cpu") -> float:
    """The squared norm of the gradient of the mean cross-entropy on ``(calib_x, calib_y)`` (training images) with
    respect to the weights of the blocks ``arch`` runs (:func:`block_parameters`, :func:`loss_gradients`: the
    supernet's weights, BatchNorm recalibrated on ``calib_x`` for ``arch``).

    This is the loss decrease per unit learning rate of one gradient step on the blocks alone: how much the
    architecture's blocks could still take from the data. ``add`` fusion starts at the identity, so an untrained
    block's accuracy says nothing while this does. A shared tensor (``share="stage"``) counts once, its gradient
    summed over the sites that use it; the plain backbone (no block) scores 0. Leaves no gradient behind."""
    net.set_architecture(arch)
    grads = loss_gradients(net, arch, block_parameters(net), calib_x, calib_y, batch_size, device)
    return _squared_norm(grads)


def _squared_norm(grads: Sequence[Optional[torch.Tensor]]) -> float:
    return float(sum((g.double() ** 2).sum() for g in grads if g is not None))


def gradient_and_loss(net: Supernet, arch: Architecture, calib_x: torch.Tensor, calib_y: torch.Tensor, val: Split,
                      batch_size: int = 128, device: torch.device | str = "cpu") -> tuple[float, float]:
    """(:func:`gradient_score`, the validation loss of :func:`score_with_loss`) of ``arch``, with one BatchNorm
    recalibration for both (the same statistics either function re-estimates alone)."""
    net.set_architecture(arch)
    gradient = _squared_norm(loss_gradients(net, arch, block_parameters(net), calib_x, calib_y, batch_size, device))
    loss, _ = evaluate(net, val, batch_size=max(batch_size, 256), device=device)  # with the statistics just estimated
    return gradient, loss


def reference_architectures(space: SearchSpace, n: int = 32, seed: int = 0) -> list[Architecture]:
    """``n`` distinct uniform draws of ``space`` (:class:`PathSampler`, ``seed``), in draw order; fewer when the space
    holds fewer (drawing stops after ``50 * n`` draws)."""
    sampler = PathSampler(space, seed=seed)
    archs: dict[str, Architecture] = {}
    for _ in range(50 * n):
        arch = sampler()
        archs.setdefault(arch.key(), arch)
        if len(archs) == n:
            break
    return list(archs.values())


def _bandwidth(values: Sequence[float]) -> float:
    """Silverman's rule of thumb for a normal kernel over ``values`` (0 for fewer than two, or no spread)."""
    if len(values) < 2:
        return 0.0
    std = statistics.stdev(values)
    q1, _, q3 = statistics.quantiles(values, n=4)
    return 0.9 * (min(std, (q3 - q1) / 1.34) if q3 > q1 else std) * len(values) ** -0.2


def smooth_percentile(value: float, reference: Sequence[float]) -> float:
    """The share of ``reference`` below ``value`` (0 to 1), each reference value spread by a normal kernel of
    Silverman's bandwidth: strictly increasing in ``value`` where a plain percentile is flat, so values beyond the
    reference's range still rank (up to about 8 bandwidths past it, where doubles run out). ``-inf`` stands for a
    value below every other; a reference with no spread counts a tie as half."""
    if not reference:
        raise ValueError("smooth_percentile: an empty reference")
    h = _bandwidth([r for r in reference if math.isfinite(r)])
    total = 0.0
    for r in reference:
        if value == r:
            total += 0.5
        elif h == 0.0 or not math.isfinite(r) or not math.isfinite(value):
            total += 1.0 if value > r else 0.0
        else:
            total += 0.5 * (1.0 + math.erf((value - r) / (h * math.sqrt(2.0))))
    return total / len(reference)


def _log(gradient: float) -> float:
    return math.log(gradient) if gradient > 0 else -math.inf  # the plain backbone's 0: below every block


@dataclass(frozen=True)
class ScoreReference:
    """The gradient and validation loss (:func:`gradient_and_loss`) of a fixed sample of the space
    (:func:`reference_architectures`) on one trained supernet: the scale :func:`gradient_and_loss_score` places an
    architecture on. Measured once per supernet (:meth:`measure`), stored beside it as :meth:`to_dict`."""

    gradients: tuple[float, ...]
    losses: tuple[float, ...]
    calib_images: int

    @classmethod
    def measure(cls, net: Supernet, archs: Sequence[Architecture], calib_x: torch.Tensor, calib_y: torch.Tensor,
                val: Split, batch_size: int = 128, device: torch.device | str = "cpu") -> "ScoreReference":
        gradients, losses = zip(*(gradient_and_loss(net, a, calib_x, calib_y, val, batch_size, device)
                                  for a in archs))
        return cls(tuple(gradients), tuple(losses), len(calib_x))

    def to_dict(self) -> dict[str, Any]:
        return {"gradients": list(self.gradients), "losses": list(self.losses), "calib_images": self.calib_images}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ScoreReference":
        return cls(tuple(map(float, d["gradients"])), tuple(map(float, d["losses"])), int(d["calib_images"]))

    def place(self, gradient: float, loss: float) -> float:
        """The sum of the two standings (0 to 2, higher better): :func:`smooth_percentile` of the log-gradient among
        the reference's, and of the negated loss among theirs."""
        return (smooth_percentile(_log(gradient), [_log(g) for g in self.gradients])
                + smooth_percentile(-loss, [-x for x in self.losses]))


def gradient_and_loss_score(net: Supernet, arch: Architecture, calib_x: torch.Tensor, calib_y: torch.Tensor, val: Split,
                            reference: ScoreReference, batch_size: int = 128,
                            device: torch.device | str = "cpu") -> float:
    """:meth:`ScoreReference.place` of ``arch``'s :func:`gradient_and_loss` on ``net``, against ``reference``
    (measured on ``net`` with the same ``calib_x``).

    Neither reading ranks alone as well as both together (docs/oneshot.md): the gradient says what the blocks could
    still learn, the loss what the path does now. Their standings among a fixed sample are added, so that each counts
    alike whatever its scale, and a trial needs no other trial: the same architecture scores the same in every
    worker."""
    return reference.place(*gradient_and_loss(net, arch, calib_x, calib_y, val, batch_size, device))
