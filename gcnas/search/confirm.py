"""Confirming a study's top trials: retrain them and the plain backbone with fresh seeds, paired by seed.

A search reports the best of many single noisy runs, so its winner is partly luck (the winner's curse). The
confirmation retrains the top ``k`` trials and the plain backbone with ``n`` seeds the search never used
(``first_seed``, ``first_seed + 1``, ...), every candidate sharing each seed with the baseline, and states per
candidate: mean ± std, the paired difference to the baseline with a 95% confidence interval (Student's t over the
``n`` paired differences), and a verdict: better, worse, or not distinguishable (the interval holds 0).

It runs as a study of its own, ``<study>-confirm``, in the same storage and through the same worker loop as the search
(:func:`gcnas.search.run_search`): every worker and machine sees it, a rerun resumes it, its budget of
``(k + 1) * n`` trials is exact, and W&B tracks it. Its trials are enqueued fixed architectures; the training seed of
the j-th seed is ``first_seed + j`` (the ``replicate`` attribute). The source study records which confirmation
belongs to it (user attribute ``confirmation``), so export and report find it.
"""
from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from gcnas.errors import ConfigError
from gcnas.stats import t_interval
from gcnas.schema import read
from gcnas.search.callbacks import SearchCallback
from gcnas.search.config import ConfirmConfig
from gcnas.search.objective import FIXED_ARCH_ATTR, REPLICATE_ATTR, ROLE_ATTR, SOURCE_ATTR
from gcnas.search.study import open_study
from gcnas.search.summary import baseline_trial, ranked_trials
from gcnas.search.worker import SearchResult, run_search, validate_config
from gcnas.search import record

__all__ = ["Confirmed", "confirm_study", "confirmation_study_name", "confirmation", "confirmation_table",
           "CONFIRMATION_ATTR", "SOURCE_ATTR"]

CONFIRMATION_ATTR = record.CONFIRMATION.name  # the searched study's: {study, k, seeds, first_seed, trainer, data}

@dataclass(frozen=True)
class Confirmed:
    """One confirmed architecture: its accuracy per seed and its paired differences to the baseline."""

    trial: int  # the source study's trial
    role: str
    values: tuple[float, ...]
    diffs: tuple[float, ...]  # value - baseline's value with the same seed; empty for the baseline itself

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def diff(self) -> float:
        return statistics.fmean(self.diffs) if self.diffs else 0.0

    @property
    def interval(self) -> Optional[tuple[float, float]]:
        """95% confidence interval of the mean paired difference; None with fewer than 2 pairs."""
        return t_interval(self.diffs)

    @property
    def verdict(self) -> str:
        if self.role == "baseline":
            return "baseline"
        ci = self.interval
        if ci is None:
            return "not distinguishable (one seed)"
        if ci[0] > 0:
            return "better"
        if ci[1] < 0:
            return "worse"
        return "not distinguishable"


def confirmation_study_name(name: str) -> str:
    """The name of study ``name``'s confirmation study, in the same storage."""
    return f"{name}-confirm"


def _overrides(section: str, given: Optional[Mapping[str, Any]], have: Mapping[str, Any]) -> dict:
    given = dict(given or {})
    unknown = sorted(set(given) - set(have))
    if unknown:
        raise ConfigError(f"confirm.{section}.{unknown[0]}: not a key of the search's {section} config; valid keys are "
                          f"{', '.join(sorted(k for k in have if k != 'name'))}")
    return given


def _paired_trials(source: optuna.Study, base: FrozenTrial, candidates: Sequence[FrozenTrial],
                   seeds: int) -> list[dict]:
    """The user attributes of the confirmation's trials: for each seed j, the baseline and every candidate of the
    ``source`` study (once enqueued, each architecture lives on the confirmation study: record.enqueue)."""
    attrs = source.user_attrs  # read once: the candidates' architectures live there
    return [{FIXED_ARCH_ATTR: record.architecture_of(attrs, t), ROLE_ATTR: record.ROLE.get(t, "searched"),
             REPLICATE_ATTR: j, SOURCE_ATTR: t.number}
            for j in range(seeds) for t in [base, *candidates]]


def _confirmation_config(cfg: dict, run: Optional[Mapping[str, Any]], url: str, confirm_name: str, n_trials: int,
                         first_seed: int) -> None:
    """Turn the source study's config (``cfg``, changed in place) into the confirmation study's: the worker's own
    keys from ``run``, an exact budget of the enqueued trials, no sampling, pruning, constraints or kept weights."""
    cfg.update(run or {})
    cfg["seed"] = first_seed
    cfg["study"] = {**cfg["study"], "name": confirm_name, "storage": url, "n_trials": n_trials,
                    "enqueue_baselines": False, "noise_seeds": 1, "keep_weights": 0, "timeout": None}
    cfg["sampler"] = {"_target_": "optuna.samplers.RandomSampler", "seed": first_seed}
    cfg["pruner"] = {"_target_": "optuna.pruners.NopPruner"}
    cfg["objective"] = {"metrics": ["accuracy"], "directions": ["maximize"]}
    cfg["constraints"] = {}
    cfg["search"] = {**(cfg.get("search") or {}), "method": "standalone"}  # confirmation trains, never scores


def confirm_study(url: str, name: str, *, k: int = 5, seeds: int = 3, first_seed: int = 100,
                  trainer: Optional[Mapping[str, Any]] = None, data: Optional[Mapping[str, Any]] = None,
                  run: Optional[Mapping[str, Any]] = None,
                  callbacks: Sequence[SearchCallback] = ()) -> SearchResult:
    """Confirm the top ``k`` trials of study ``name``: ``seeds`` paired seeds each, and the plain backbone.

    ``trainer`` / ``data`` override the search's own config (a higher fidelity: more epochs, more images); ``run``
    holds the worker's own keys (``worker``, ``threads``, ``device``, ``progress``, ``paths``, ``wandb``). Everything
    is checked before the confirmation study is created. Returns the worker's :class:`SearchResult` for the
    ``<name>-confirm`` study.
    """
    args = read(ConfirmConfig, {"k": k, "seeds": seeds, "first_seed": first_seed, "trainer": trainer or {},
                                "data": data or {}}, "confirm")
    k, seeds, first_seed, trainer, data = args.k, args.seeds, args.first_seed, args.trainer, args.data
    source = open_study(url, name)
    if len(source.directions) > 1:
        raise ConfigError(f"study.name: {name!r} is multi-objective; confirmation compares accuracy, so confirm a "
                          "single-objective study (or pick a trial with gcnas-export pick=...)")
    cfg = copy.deepcopy(record.CONFIG.get(source) or {})
    if not cfg:
        raise ConfigError(f"study.name: study {name!r} recorded no config (not made by gcnas-search); nothing to "
                          "retrain its trials with")
    base = baseline_trial(source)
    candidates = [t for t in ranked_trials(source) if record.ROLE.get(t) != "baseline"][:k]
    if base is None or not candidates:
        raise ConfigError(f"study.name: study {name!r} has no finished "
                          + ("plain-backbone trial (run the search with study.enqueue_baselines=true)" if base is None
                            else "trained trial besides the baseline yet") + "; nothing to confirm")
    cfg["trainer"].update(_overrides("trainer", trainer, cfg["trainer"]))
    cfg["data"].update(_overrides("data", data, cfg["data"]))
    confirm_name = confirmation_study_name(name)
    trials = _paired_trials(source, base, candidates, seeds)
    _confirmation_config(cfg, run, url, confirm_name, len(trials), first_seed)
    recorded = {"study": confirm_name, "k": k, "seeds": seeds, "first_seed": first_seed,
                "trainer": dict(trainer or {}), "data": dict(data or {})}
    earlier = record.CONFIRMATION.get(source)
    if earlier and earlier != recorded:
        raise ConfigError(f"confirm: study {name!r} was confirmed with {earlier}; this asks for {recorded}. Run the "
                          "same confirmation to resume it, or search into a new study.name to confirm differently")
    validate_config(cfg)  # the worker's own keys too, before anything is stored
    record.CONFIRMATION.set(source, recorded)  # before training: export and report find a partial one
    return run_search(cfg, callbacks=callbacks, fixed_trials=trials)


def confirmation(study: optuna.Study, storage: Any) -> Optional[list[Confirmed]]:
    """The confirmed architectures of a (source) study in ``storage`` (its URL or storage object), baseline first,
    then by mean paired difference; None if it was never confirmed. Only seeds whose baseline run finished are paired;
    unfinished runs are left out."""
    info = record.CONFIRMATION.get(study)
    if not info:
        return None
    try:
        conf = optuna.load_study(study_name=info["study"], storage=storage)
    except KeyError:
        return None
    runs: dict[int, dict[int, float]] = {}
    roles: dict[int, str] = {}
    for t in conf.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        src = record.CONFIRMS.get(t)
        if src is None:
            continue
        runs.setdefault(src, {})[int(record.REPLICATE.get(t, 0))] = t.values[0]
        roles[src] = record.ROLE.get(t, "searched")
    base = next((src for src, role in roles.items() if role == "baseline"), None)
    if base is None:
        return []
    base_runs = runs[base]
    out = [Confirmed(base, "baseline", tuple(base_runs[j] for j in sorted(base_runs)), ())]
    for src, r in runs.items():
        if src == base:
            continue
        seeds = sorted(set(r) & set(base_runs))
        if seeds:
            out.append(Confirmed(src, roles[src], tuple(r[j] for j in seeds),
                                 tuple(r[j] - base_runs[j] for j in seeds)))
    return out[:1] + sorted(out[1:], key=lambda c: (-c.diff, c.trial))


def confirmation_table(confirmed: Sequence[Confirmed]) -> str:
    """A Markdown table: per architecture, mean ± std over the seeds, the paired difference to the baseline with its
    95% confidence interval, and the verdict."""
    lines = ["| trial | role | seeds | val acc (mean ± std) | vs plain, paired | 95% CI | verdict |",
             "|---|---|---:|---:|---:|---:|---|"]
    for c in confirmed:
        ci = c.interval
        lines.append(f"| {c.trial} | {c.role} | {len(c.values)} | {c.mean:.4f} ± {c.std:.4f} | "
                     + ("-" if c.role == "baseline" else f"{100 * c.diff:+.2f} pp") + " | "
                     + ("-" if ci is None else f"[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}] pp") + f" | {c.verdict} |")
    return "\n".join(lines)

