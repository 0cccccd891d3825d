"""One-shot against standalone search: speed, agreement of the rankings, and what each finds for the same budget.

A fixed random sample of ``--archs`` distinct architectures of the search space (Optuna's RandomSampler with
``--sample-seed``, the plain backbone one of them; the same sample as ``benchmarks/fidelity.py``; several seeds pool
their samples into one, each architecture once, so that tau is measured over more architectures), measured two ways
on the same data and trainer config (Hydra ``OVERRIDE``s, e.g. ``data=context``):

* **standalone**: each architecture trained alone at the search's fidelity with every seed of ``--seeds`` (a search
  trial's cost and value);
* **one-shot**: one supernet per ``--sampling`` (``uniform``, ``fair``: ``search.supernet_sampling``), ``--share``
  (``site``, ``stage``: ``search.supernet_share``) and seed of ``--supernet-seeds``, trained for ``--supernet-epochs``
  epochs (:func:`gcnas.oneshot.train_supernet`, the search's own code; ``0``: untrained, the control that says what
  the training adds), then every architecture scored on it by each ``--score``, BatchNorm recalibrated on
  ``search.calib_images`` training images first: ``accuracy`` (validation accuracy, ties broken by the lower
  validation loss, since a supernet can bring every path to 100 %), ``gradient`` (:func:`gcnas.oneshot.gradient_score`:
  the squared gradient of the training loss on those images with respect to the architecture's block weights) and
  ``gradient_and_loss`` (:func:`gcnas.oneshot.gradient_and_loss_score`: both readings placed among those of the
  space's reference sample, measured once per supernet and counted with its training), each what a one-shot study of
  that ``search.supernet_score`` scores. A supernet's ranking depends on its seed as a training's accuracy does: each
  tau is given as mean ± std over the supernet seeds.

Printed, side by side in one run:

* **speed**: architectures per hour of this machine, supernet training included, against standalone trials
  (the issue's goal: at least 20x);
* **agreement**: Kendall's tau between the one-shot ranking and the standalone ranking by the mean over the seeds,
  next to what one standalone seed achieves: tau between two seeds, and between one seed and the mean of the others
  (the goal: the supernet agrees with the seeds' mean at least as well as one seed does; judged against the same
  targets, the means with each seed left out in turn; the difference comes with its 95 % bootstrap interval over
  the architectures, resampled with replacement, which says whether it is inside the noise of the sample);
* **same budget**: a one-shot search scores the whole sample in the time of its supernet plus the scores; a random
  standalone search of that same time trains as many of the sample as fit (in sample order) and keeps the best by
  seed ``--seeds[0]``. Each pick is then *confirmed*: trained again with every seed of ``--confirm-seeds`` (seeds no
  selection saw); the difference of the confirmed means is compared with its standard error.

Every training and every supernet is cached in ``--workdir`` as it finishes, so an interrupted run resumes.

Usage: python -m benchmarks.oneshot [--archs 16 [16 ...]] [--sample-seed 0 [1 ...]] [--seeds 0 1 2]
                                    [--sampling uniform fair] [--share site stage] [--supernet-epochs N]
                                    [--supernet-seeds 0 1 2] [--score accuracy gradient gradient_and_loss]
                                    [--confirm-seeds 10 11 12] [--threads N] [--workdir benchmarks/.oneshot]
                                    [--cache FILE] [OVERRIDE ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import optuna
import torch

from benchmarks.common import Fidelity, Progress, config, space_of, spread
from benchmarks.fidelity import sample
from gcnas.machine import describe_machine
from gcnas.oneshot import (SCORES, PathSampler, ScoreReference, gradient_and_loss_score, gradient_score,
                          reference_architectures, score_with_loss, supernet_for_space, train_supernet)
from gcnas.search.summary import describe_architecture
from gcnas.space import SearchSpace
from gcnas.stats import bootstrap_interval, kendall_tau, noise_verdict, ranks


def pooled_sample(cfg: dict, fid: Fidelity, sizes: list[int], seeds: list[int]) -> list:
    """Each seed's sample of its size (``benchmarks/fidelity.py``'s, the plain backbone first), in seed order, every
    architecture once: the plain backbone and any other draw two samples share count once."""
    archs = {}
    for n, seed in zip(sizes, seeds):
        for arch in sample(cfg, fid, n, seed):
            archs.setdefault(arch.key(), arch)
    return list(archs.values())


def trained_supernet(cfg: dict, space: SearchSpace, fid: Fidelity, sampling: str, share: str, seed: int,
                     epochs: int, workdir: Path, tag: str):
    """The supernet and its training seconds (trained here, or loaded from the cache folder)."""
    parts = [tag, sampling, seed, epochs] + ([share] if share != "site" else [])  # site: as cached before the key
    ident = hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]
    path = workdir / f"supernet-{sampling}-{ident}.pt"
    torch.manual_seed(seed)
    net = supernet_for_space(space, share)
    if epochs == 0:  # the control: the supernet as initialised
        return net, 0.0
    if path.is_file():
        saved = torch.load(str(path), map_location="cpu", weights_only=True)
        net.load_state_dict(saved["state_dict"])
        return net, float(saved["seconds"])
    recipe = {**{k: v for k, v in cfg["trainer"].items() if k != "name"}, "epochs": epochs}
    t0 = time.perf_counter()
    train_supernet(net, PathSampler(space, seed=seed, sampling=sampling), fid.data, recipe, seed=seed,
                   ckpt_dir=workdir / f"training-{sampling}-{ident}")
    seconds = time.perf_counter() - t0
    torch.save({"state_dict": net.state_dict(), "seconds": seconds}, str(path))
    print(f"supernet ({sampling}, {share}, seed {seed}) trained in {seconds:.0f} s", file=sys.stderr, flush=True)
    return net, seconds


def shot_scores(net, archs: list, fid: Fidelity, calib_images: int, batch_size: int, how: str,
                space: SearchSpace) -> tuple[list, float, float]:
    """Each architecture's score on the supernet (``accuracy``: (accuracy, validation loss); ``gradient``: the
    blocks' squared gradient; ``gradient_and_loss``: both placed against the supernet's reference sample), the mean
    seconds per architecture, and the seconds the reference took (once per supernet, as in a study; 0 for the
    others)."""
    x, y = fid.data.train.head(calib_images)
    t0 = time.perf_counter()
    reference = None
    if how == "gradient_and_loss":
        reference = ScoreReference.measure(net, reference_architectures(space), x, y, fid.data.val, batch_size)
    reference_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if how == "accuracy":
        out = [score_with_loss(net, arch, x, fid.data.val, batch_size) for arch in archs]
    elif how == "gradient":
        out = [gradient_score(net, arch, x, y, batch_size) for arch in archs]
    else:
        out = [gradient_and_loss_score(net, arch, x, y, fid.data.val, reference, batch_size) for arch in archs]
    return out, (time.perf_counter() - t0) / len(archs), reference_s


def tau_gap(rankings: list[list[float]], alone: dict[int, list[float]], left_out: dict[int, list[float]]):
    """The goal's comparison as a statistic of the architectures ``idx`` (to resample): the one-shot tau (``rankings``:
    one per supernet) minus one standalone seed's (``alone``: each seed's values), both against ``left_out`` (the
    means with each seed left out)."""
    def stat(idx: list[int]) -> float:
        def pick(values: list) -> list:
            return [values[i] for i in idx]
        one = statistics.fmean(kendall_tau(pick(alone[s]), pick(left_out[s])) for s in alone)
        return statistics.fmean(kendall_tau(pick(r), pick(left_out[s])) for r in rankings for s in alone) - one
    return stat


def key_of(how: str, value) -> tuple:
    """The sort key of a score: accuracy, then the lower loss; or the gradient."""
    return (value[0], -value[1]) if how == "accuracy" else (value,)


def cell(how: str, value) -> str:
    return f"{100 * value[0]:.2f} (loss {value[1]:.3f})" if how == "accuracy" else f"{value:.3g}"


def pm(values: list[float]) -> str:
    """Accuracies as ``mean ± std`` in percent."""
    return spread(values, 100)


def sample_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of the measured sample, shared by this benchmark and ``benchmarks/oneshot_scores.py``."""
    ap.add_argument("--archs", type=int, nargs="+", default=[16],
                    help="architectures in each seed's sample (the plain backbone is one): one number for every "
                    "--sample-seed, or one per seed")
    ap.add_argument("--sample-seed", type=int, nargs="+", default=[0],
                    help="RandomSampler seeds of the sample; several pool their samples (the plain backbone first, "
                    "every architecture once)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="standalone training seeds")
    ap.add_argument("--share", nargs="+", default=["site", "stage"], help="search.supernet_share values")
    ap.add_argument("--supernet-epochs", type=int, default=None, help="default: the config's search.supernet_epochs")
    ap.add_argument("--supernet-seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="a supernet per seed: the spread of their tau is the one-shot ranking's noise")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    ap.add_argument("--workdir", type=Path, default=Path("benchmarks/.oneshot"),
                    help="cached trainings and supernets (a rerun resumes from them; delete to start over)")
    ap.add_argument("--cache", type=Path, default=None, help="the trainings' cache (default: in --workdir); give "
                    "benchmarks/fidelity.py's --cache to reuse its trainings of the same sample")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=context (last, or after --)")


@dataclasses.dataclass
class MeasuredSample:
    """The sample (:func:`pooled_sample`) with its standalone trainings done, and what the supernets need."""

    cfg: dict
    fid: Fidelity
    epochs: int  # the supernets' training epochs
    calib: int  # search.calib_images
    batch: int  # trainer.batch_size
    sizes: list[int]  # each --sample-seed's sample size
    archs: list
    tag: str  # the Hydra overrides, in the cache's names
    name: str  # the standalone trainings' name in the cache
    progress: Progress
    alone: dict[int, list[float]]  # each standalone seed's accuracies, in sample order
    left_out: dict[int, list[float]]  # the targets one seed is judged against: the mean of the other seeds

    def one_seed(self) -> list[float]:
        """Each standalone seed's tau against the mean of the others."""
        return [kendall_tau(self.alone[s], self.left_out[s]) for s in self.alone]

    def left_out_tau(self, ranking: list[float]) -> float:
        """A ranking's tau against the standalone means with each seed left out in turn, averaged over the seeds (as
        :meth:`one_seed` judges one seed)."""
        return statistics.fmean(kendall_tau(ranking, self.left_out[s]) for s in self.left_out)


def measured_sample(ap: argparse.ArgumentParser, args: argparse.Namespace) -> MeasuredSample:
    """The options of :func:`sample_arguments` checked (a bad one ends the run through ``ap.error``, before any
    training), the sample drawn, and every architecture trained standalone with every seed (or read from the cache)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    if len(args.seeds) < 2:
        ap.error("--seeds: give at least two (one seed is compared with the others' mean)")
    if len(args.archs) not in (1, len(args.sample_seed)):
        ap.error(f"--archs: one number, or one per --sample-seed ({len(args.sample_seed)}); got {len(args.archs)}")
    if args.supernet_epochs is not None and args.supernet_epochs < 0:
        ap.error("--supernet-epochs: 0 (untrained) or more")
    args.workdir.mkdir(parents=True, exist_ok=True)
    cfg = config(*args.overrides)
    fid = Fidelity(cfg)
    epochs = int(cfg["search"]["supernet_epochs"]) if args.supernet_epochs is None else args.supernet_epochs
    sizes = args.archs * len(args.sample_seed) if len(args.archs) == 1 else args.archs
    archs = pooled_sample(cfg, fid, sizes, args.sample_seed)
    tag = "|".join(args.overrides)
    # named as benchmarks/fidelity.py names its trainings at the search's fidelity: one cache serves both
    name = f"demo:{cfg['data']['train_subset']}x{cfg['trainer']['epochs']}{'|' + tag if tag else ''}"
    progress = Progress(args.cache or args.workdir / "cache.json", len(archs) * len(args.seeds))
    alone = {s: [progress.measure(name, fid, a, s) for a in archs] for s in args.seeds}
    left_out = {skip: [statistics.fmean(alone[s][i] for s in args.seeds if s != skip) for i in range(len(archs))]
                for skip in args.seeds}
    return MeasuredSample(cfg, fid, epochs, int(cfg["search"]["calib_images"]), int(cfg["trainer"]["batch_size"]),
                          sizes, archs, tag, name, progress, alone, left_out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sampling", nargs="+", default=["uniform", "fair"], help="search.supernet_sampling values")
    ap.add_argument("--score", nargs="+", default=list(SCORES), choices=SCORES,
                    help="how the supernet scores an architecture (see above)")
    ap.add_argument("--confirm-seeds", type=int, nargs="+", default=[10, 11, 12])
    sample_arguments(ap)
    args = ap.parse_args(argv)
    t_run = time.perf_counter()
    m = measured_sample(ap, args)
    cfg, fid, epochs, calib, batch, archs, name, progress = (m.cfg, m.fid, m.epochs, m.calib, m.batch, m.archs,
                                                              m.name, m.progress)
    alone, left_out, sizes, tag = m.alone, m.left_out, m.sizes, m.tag
    trial_s = statistics.fmean(progress.cache[f"{name}|{a.key()}|{s}|seconds"] for a in archs for s in args.seeds
                               if f"{name}|{a.key()}|{s}|seconds" in progress.cache)
    mean_all = [statistics.fmean(alone[s][i] for s in args.seeds) for i in range(len(archs))]
    seed_pairs = [kendall_tau(alone[a], alone[b]) for a, b in itertools.combinations(args.seeds, 2)]
    seed_rest = m.one_seed()

    # -- one-shot: a supernet per sampling, sharing and seed, every architecture scored on it
    space = space_of(cfg, fid.data)
    shots: dict[str, list[dict]] = {}
    for sampling, share, seed in itertools.product(args.sampling, args.share, args.supernet_seeds):
        net, sup_s = trained_supernet(cfg, space, fid, sampling, share, seed, epochs, args.workdir, tag)
        for how in args.score:
            scores, score_s, reference_s = shot_scores(net, archs, fid, calib, batch, how, space)
            ranked = ranks([key_of(how, v) for v in scores])
            shots.setdefault(f"{sampling}, {share}, {how}", []).append({
                "seed": seed, "how": how, "scores": scores, "ranked": ranked, "supernet_s": sup_s + reference_s,
                "score_s": score_s,
                "tau": kendall_tau(ranked, mean_all),
                "loo": m.left_out_tau(ranked)})

    # -- the same budget: one-shot over the whole sample, standalone trials in the time it took
    sel = args.seeds[0]
    confirm_name = f"confirm|{name}"

    def confirmed(i: int) -> list[float]:
        return [progress.measure(confirm_name, fid, archs[i], s) for s in args.confirm_seeds]

    picks = []
    for label, runs in shots.items():
        for r in runs:
            budget = r["supernet_s"] + len(archs) * r["score_s"]
            best_shot = max(range(len(archs)), key=lambda i: r["ranked"][i])
            k = max(1, min(len(archs), int(budget // trial_s)))
            best_alone = max(range(k), key=lambda i: alone[sel][i])
            picks.append((label, r["seed"], budget, k, best_shot, best_alone))
    progress.total += len(args.confirm_seeds) * (1 + 2 * len(picks))  # the plain backbone, then both picks of each

    d, tr = cfg["data"], cfg["trainer"]
    seeds_of_sample = ", ".join(map(str, args.sample_seed))
    drawn = (f"RandomSampler seed {seeds_of_sample}" if len(args.sample_seed) == 1 else
             f"RandomSampler seeds {seeds_of_sample} drawing {', '.join(map(str, sizes))}, pooled")
    print(f"{len(archs)} architectures of {cfg['search_space']['name']} ({drawn}, the plain backbone included), "
          f"{cfg['backbone']['name']}, data={d['name']}"
          f"{' (' + ' '.join(args.overrides) + ')' if args.overrides else ''}, {tr['epochs']} epochs per standalone "
          f"trial, seeds {', '.join(map(str, args.seeds))}; supernets of {epochs} epochs"
          f"{' (untrained: the control)' if epochs == 0 else ''}, seeds "
          f"{', '.join(map(str, args.supernet_seeds))}, {calib} calibration images. {describe_machine()}; "
          f"{time.perf_counter() - t_run:.0f} s in this run\n")

    print("| method | architectures per hour | vs standalone | a study of the sample's size, min |")
    print("|---|---:|---:|---:|")
    print(f"| standalone trials ({trial_s:.1f} s each) | {3600 / trial_s:.0f} | 1x | "
          f"{len(archs) * trial_s / 60:.1f} |")
    for label, runs in shots.items():
        sup_s, score_s = (statistics.fmean(r[k] for r in runs) for k in ("supernet_s", "score_s"))
        per_hour = max(0.0, 3600 - sup_s) / score_s
        with_reference = ", its score reference included" if runs[0]["how"] == "gradient_and_loss" else ""
        print(f"| one-shot, {label} (supernet {sup_s:.0f} s{with_reference}, {score_s:.2f} s a score; mean of "
              f"{len(runs)}) | "
              f"{per_hour:.0f} | {per_hour * trial_s / 3600:.0f}x | {(sup_s + len(archs) * score_s) / 60:.1f} |")

    n_seeds = len(args.seeds)
    print(f"\n| rankings compared ({len(archs)} architectures; mean ± std over seeds) | Kendall tau |")
    print("|---|---:|")
    print(f"| one standalone seed vs another (each pair) | {spread(seed_pairs)} |")
    print(f"| one standalone seed vs the mean of the other {n_seeds - 1} (each seed) | {spread(seed_rest)} |")
    for label, runs in shots.items():
        print(f"| one-shot, {label} vs the mean of all {n_seeds} seeds (each supernet seed) | "
              f"{spread([r['tau'] for r in runs])} |")
        print(f"| one-shot, {label} vs the mean of {n_seeds - 1} (each standalone seed left out in turn, as for one "
              f"seed; each supernet seed) | {spread([r['loo'] for r in runs])} |")
    target = statistics.fmean(seed_rest)

    for label, runs in shots.items():
        loo = [r["loo"] for r in runs]
        met = statistics.fmean(loo) >= target  # against the same targets as one seed's row
        lo, hi = bootstrap_interval(tau_gap([r["ranked"] for r in runs], alone, left_out), len(archs))
        noise = noise_verdict(lo, hi)
        if runs[0]["how"] == "accuracy":
            accs = [a for r in runs for a, _ in r["scores"]]
            seen = f"accuracies on the supernets: {100 * min(accs):.1f}-{100 * max(accs):.1f} %"
        else:
            values = [v for r in runs for v in r["scores"]]
            seen = f"{runs[0]['how']} scores on the supernets: {min(values):.3g}-{max(values):.3g}"
        print(f"\nGoal (one-shot agrees with the seeds' mean at least as well as one seed does), {label}: "
              f"{'met' if met else 'not met'} ({spread(loo)} vs {spread(seed_rest)}; difference "
              f"{statistics.fmean(loo) - target:+.2f}, 95 % interval over resampled architectures {lo:+.2f} to "
              f"{hi:+.2f}: {noise}). The {seen}; standalone means: "
              f"{100 * min(mean_all):.1f}-{100 * max(mean_all):.1f} %.")

    plain = confirmed(0)  # the sample's first architecture is the plain backbone
    print(f"\nThe same budget, confirmed with seeds {', '.join(map(str, args.confirm_seeds))} (plain backbone: "
          f"{pm(plain)} %):\n")
    print("| one-shot | supernet seed | budget, min | one-shot pick | confirmed, % | standalone pick (of the first k "
          "trials) | k | confirmed, % | one-shot - standalone, pp | beyond noise |")
    print("|---|---:|---:|---|---:|---|---:|---:|---:|---|")
    for label, seed, budget, k, i_shot, i_alone in picks:
        a, b = confirmed(i_shot), confirmed(i_alone)
        diff = [x - y for x, y in zip(a, b)]
        m = statistics.fmean(diff)
        se = (statistics.stdev(diff) / len(diff) ** 0.5) if len(diff) > 1 else 0.0
        print(f"| {label} | {seed} | {budget / 60:.1f} | {describe_architecture(archs[i_shot])} | {pm(a)} | "
              f"{describe_architecture(archs[i_alone])} | {k} | {pm(b)} | {100 * m:+.2f} ± {100 * se:.2f} (s.e.) | "
              f"{'yes' if abs(m) > 2 * se and m != 0 else 'no'} |")

    first = {label: runs[0] for label, runs in shots.items()}
    print(f"\nEach architecture (one-shot: supernet seed {args.supernet_seeds[0]}):\n")
    print("| architecture | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean | "
          + " | ".join(f"one-shot {label}" for label in first) + " |")
    print("|---|" + "---:|" * (len(args.seeds) + 1 + len(first)))
    for i, arch in enumerate(archs):
        cells = [f"{100 * alone[s][i]:.2f}" for s in args.seeds] + [f"{100 * mean_all[i]:.2f}"]
        cells += [cell(r["how"], r["scores"][i]) for r in first.values()]
        print(f"| {describe_architecture(arch)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
