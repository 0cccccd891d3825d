"""Does the search find a real effect? TPE against random search on the context task, after confirmation.

On Fashion-MNIST every global-context design lies within the seed-to-seed noise of the plain backbone, so nothing
there can tell a search that works from one that guesses. ``data=context`` (gcnas/data/context.py;
docs/search-quality.md, "A task where global context decides") is generated so that global context decides. This
benchmark runs the real search there (``gcnas.search.run_search``: the tiny timm ResNet, the ``gc_full`` space, the
proxy trainer, SQLite storage) and measures, side by side in one run:

* **search**: each sampler of ``--samplers`` with the same trial budget (``--trials``) for each of ``--seeds``
  (sampler and training seed); ``oneshot`` is TPE whose trials are scored on the study's supernet
  (``search.method=oneshot``, its training counted in the search time; ``--supernet-score``:
  ``search.supernet_score``) instead of trained. The enqueued references
  are off (they would hand every study the paper's GC) and so is pruning (the samplers alone are compared). Each
  study's top ``--confirm-k`` architectures are *confirmed*: trained again with every seed of ``--confirm-seeds``;
  the best confirmed mean is what the study found. The plain backbone and the paper's GC are trained with the same
  seeds. The **good region** is every architecture whose
  accuracy is above plain's by more than half the plain-to-paper-GC gap; a study "lands" there when its confirmed
  best does, and "first good trial" counts the trials it took to draw the first one (at the search's fidelity).
* **region**: on the random studies' trials (uniform draws of ``gc_full``), which choices (context modeling,
  transform, fusion, stages, position) the good trials share.
* **fidelity**: on up to ``--fidelity-archs`` of those draws, Kendall's tau between the search's fidelity (the
  trial's own value) and a higher one (``--high-size`` generated images, ``--high-epochs`` epochs, seed 0), next to
  the tau between two seeds at the search's fidelity (the noise ceiling). Where the higher fidelity saturates (every
  architecture at 100 %), it is also ranked by accuracy with ties broken by the lower final validation loss.

Studies live in ``--workdir`` and every extra training is cached there as it finishes, so an interrupted run resumes
(the studies continue to their budget); delete the folder to start over.

Usage: python -m benchmarks.recovery [--samplers tpe random oneshot]
                                     [--supernet-score accuracy|gradient|gradient_and_loss]
                                     [--seeds 0 1 2] [--trials 16] [--confirm-k 2]
                                     [--confirm-seeds 10 11 12] [--fidelity-archs 16] [--high-size 18000]
                                     [--high-epochs 8] [--threads N] [--workdir benchmarks/.recovery]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import optuna
import torch

from benchmarks.common import Fidelity, Progress, backbone_kwargs, config, space_of, spread
from gcnas.arch import Architecture, paper_default_architecture
from gcnas.backbones import list_sites
from gcnas.blocks.fusion import fusion_spelling
from gcnas.machine import describe_machine
from gcnas.oneshot import SCORES, supernet_for_space
from gcnas.search import record, run_search
from gcnas.search.oneshot import oneshot_scorer, study_reference, study_supernet
from gcnas.search.study import open_study
from gcnas.search.summary import describe_architecture, finished_trials, ranked_trials
from gcnas.stats import kendall_tau, ranks


def pm(values: list[float]) -> str:
    """Accuracies as ``mean ± std`` in percent, one decimal."""
    return spread(values, 100, 1)


class Study:
    """One finished search: its trials in the order they ran, its confirmed best, its cost."""

    def __init__(self, sampler: str, seed: int, trials: list, ranked: list, seconds: float) -> None:
        self.sampler, self.seed, self.trials, self.ranked, self.seconds = sampler, seed, trials, ranked, seconds
        self.confirmed: list[tuple[Architecture, list[float]]] = []

    @property
    def best(self) -> tuple[Architecture, list[float]]:
        return max(self.confirmed, key=lambda c: statistics.fmean(c[1]))


# every architecture of the studies read so far, by key: a key names one architecture whatever study holds it
_ARCHITECTURES: dict[str, str] = {}


def arch_of(t) -> Architecture:
    """A trial's architecture, of a study :func:`run_study` read."""
    return Architecture.from_yaml(_ARCHITECTURES[record.ARCH_KEY.get(t)])


def oneshot_study_name(seed: int, score: str) -> str:
    """A one-shot study holds one kind of score; the accuracy's keeps the name it had before the option."""
    return f"recovery-oneshot-{seed}" + ("" if score == "accuracy" else f"-{score}")


def run_study(workdir: Path, sampler: str, seed: int, trials: int, threads: int, progress: Progress,
              score: str) -> Study:
    root = workdir / f"{sampler}{seed}"
    name = oneshot_study_name(seed, score) if sampler == "oneshot" else f"recovery-{sampler}-{seed}"
    method = (["sampler=tpe", "search.method=oneshot", f"search.supernet_score={score}"] if sampler == "oneshot"
              else [f"sampler={sampler}"])
    cfg = config("data=context", *method, f"seed={seed}", f"paths.root={root}", f"study.name={name}",
                 f"study.n_trials={trials}", "study.enqueue_baselines=false", "pruner=none", "study.keep_weights=0")
    cfg["threads"] = threads
    key = f"study|{name}|{trials}"
    t0 = time.perf_counter()
    run_search(cfg)  # resumes a study interrupted earlier, up to its budget
    if key not in progress.cache:  # the cost of the whole study, as measured the first time it finished
        progress.cache[key] = time.perf_counter() - t0
        progress.save()
    study = open_study(cfg["study"]["storage"], name)
    _ARCHITECTURES.update((record.ARCH_KEY.get(t), record.architecture_of(study, t)) for t in finished_trials(study)
                          if record.ARCH_KEY.on(t))
    print(f"study {name}: {len(finished_trials(study))} trials, {progress.cache[key] / 60:.1f} min", file=sys.stderr)
    return Study(sampler, seed, sorted(finished_trials(study), key=lambda t: t.number), ranked_trials(study),
                 progress.cache[key])


def design_rows(spec_of, trials: list, threshold: float) -> list[str]:
    groups: dict[str, list[float]] = defaultdict(list)
    for t in trials:
        arch = arch_of(t)
        for label in spec_of(arch):
            groups[label].append(t.values[0])
    rows = []
    order = ("context", "transform", "ratio", "bottleneck", "fusion", "a block", "no block", "position")
    for label in sorted(groups, key=lambda g: (next((i for i, o in enumerate(order) if g.startswith(o)), 9), g)):
        v = groups[label]
        rows.append(f"| {label} | {len(v)} | {100 * statistics.fmean(v):.1f} | "
                    f"{sum(a > threshold for a in v)} of {len(v)} |")
    return rows


def region_labels(arch: Architecture) -> list[str]:
    if not arch.placements:
        return ["plain backbone"]
    spec = arch.placements[0].spec  # gc_full shares one design across its sites
    stages = sorted({p.stage for p in arch.placements})
    labels = [f"context {spec.context}", f"transform {spec.transform}", f"fusion {fusion_spelling(spec.fusion)}"]
    if spec.ratio is not None:
        labels.append(f"ratio {spec.ratio:g}")
    if spec.transform == "bottleneck":
        labels.append(f"bottleneck norm {spec.norm}")
    labels += [f"a block in stage {s}" for s in stages]
    labels += [f"no block in stage {s}" for s in range(4) if s not in stages]
    labels += [f"position {p}" for p in sorted({p.position for p in arch.placements})]
    return labels


def oneshot_rows(args, cfg: dict, fid: Fidelity, unique: list, low: list, other: list, high: list) -> list[str]:
    """Kendall's tau of the one-shot scores (``--supernet-score`` on the first oneshot study's supernet) of the same
    draws."""
    if "oneshot" not in args.samplers:
        return []
    data, seed = fid.data, args.seeds[0]
    space = space_of(cfg, data)
    study_dir = args.workdir / f"oneshot{seed}" / oneshot_study_name(seed, args.supernet_score)
    search = {**cfg["search"], "supernet_score": args.supernet_score}
    net = study_supernet(supernet_for_space(space, search["supernet_share"]), space, data, cfg["trainer"],
                         search, seed, study_dir, "cpu")  # loads the study's
    batch = int(cfg["trainer"]["batch_size"])
    reference = study_reference(net, space, data, search, study_dir, batch, "cpu")  # gradient_and_loss's
    scorer = oneshot_scorer(net, data, search, batch, "cpu", reference)
    shot = [scorer(arch_of(t)) for t in unique]
    mean2 = [(a + b) / 2 for a, b in zip(low, other)]
    return [f"| one-shot {args.supernet_score} (supernet of oneshot seed {seed}) vs the higher fidelity (ties by "
            f"loss) | {len(unique)} | {kendall_tau(shot, high):.2f} |",
            f"| one-shot score vs the mean of the two seeds at the search's fidelity | {len(unique)} | "
            f"{kendall_tau(shot, mean2):.2f} |"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samplers", nargs="+", default=["tpe", "random", "oneshot"],
                    help="conf/sampler/ names, and oneshot: TPE scoring on the study's supernet "
                    "(search.method=oneshot)")
    ap.add_argument("--supernet-score", choices=SCORES, default="accuracy",
                    help="search.supernet_score of the oneshot studies (docs/oneshot.md)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--trials", type=int, default=16, help="trial budget of each study")
    ap.add_argument("--confirm-k", type=int, default=2, help="top trials of each study that are confirmed")
    ap.add_argument("--confirm-seeds", type=int, nargs="+", default=[10, 11, 12])
    ap.add_argument("--fidelity-archs", type=int, default=16, help="random draws measured at the higher fidelity")
    ap.add_argument("--high-size", type=int, default=18000, help="images generated at the higher fidelity (the "
                    "search's: 9000, of which 5,875 train)")
    ap.add_argument("--high-epochs", type=int, default=8, help="epochs at the higher fidelity (the search's: 4)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    ap.add_argument("--workdir", type=Path, default=Path("benchmarks/.recovery"),
                    help="studies and cached trainings (a rerun resumes from them; delete to start over)")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = config("data=context")
    search_fid = Fidelity(cfg)
    n_studies = len(args.samplers) * len(args.seeds)
    n_fid = args.fidelity_archs if "random" in args.samplers else 0
    progress = Progress(args.workdir / "cache.json",
                        2 * len(args.confirm_seeds) * (1 + args.confirm_k * n_studies) + 2 * n_fid)
    data = search_fid.data
    kwargs = backbone_kwargs(cfg, data)
    name = cfg["backbone"]["name"]
    plain = Architecture(name, dict(kwargs), ())
    paper = paper_default_architecture(name, list_sites(name, input_size=data.input_size, **kwargs), kwargs)
    fid = f"search:{cfg['data']['size']}x{cfg['trainer']['epochs']}"
    measure = lambda arch, seed: progress.measure(fid, search_fid, arch, seed)  # noqa: E731
    ref = {"plain": [measure(plain, s) for s in args.confirm_seeds],
           "paper GC": [measure(paper, s) for s in args.confirm_seeds]}
    lo, hi = statistics.fmean(ref["plain"]), statistics.fmean(ref["paper GC"])
    threshold = lo + (hi - lo) / 2

    studies = [run_study(args.workdir, sampler, seed, args.trials, threads, progress, args.supernet_score)
               for sampler in args.samplers for seed in args.seeds]
    for st in studies:
        for t in st.ranked[: args.confirm_k]:
            arch = arch_of(t)
            st.confirmed.append((arch, [measure(arch, s) for s in args.confirm_seeds]))

    rows = ["| sampler | seed | best at the search's fidelity | confirmed best, % (mean ± std) | vs plain, pp | "
            "good region | first good trial | search time, min | confirmed best architecture |",
            "|---|---:|---:|---:|---:|---|---:|---:|---|"]
    per_sampler: dict[str, list[Study]] = defaultdict(list)
    for st in studies:
        per_sampler[st.sampler].append(st)
        arch, accs = st.best
        # a one-shot score other than the accuracy is no accuracy: no threshold applies to it
        scored = st.sampler == "oneshot" and args.supernet_score != "accuracy"
        first = None if scored else next((i + 1 for i, t in enumerate(st.trials)
                                          if t.values and t.values[0] > threshold), None)
        st.first = first
        value = st.ranked[0].values[0]
        best = f"{args.supernet_score} {value:.3g}" if scored else f"{100 * value:.1f}"
        rows.append(f"| {st.sampler} | {st.seed} | {best} | {pm(accs)} | "
                    f"{100 * (statistics.fmean(accs) - lo):+.1f} | "
                    f"{'yes' if statistics.fmean(accs) > threshold else 'no'} | {first or '-'} | "
                    f"{st.seconds / 60:.1f} | {describe_architecture(arch)} |")
    summary = ["| sampler | confirmed best, % (mean of the studies' means ± std) | studies in the good region | first "
               "good trial (where found) | search time per study, min |", "|---|---:|---:|---:|---:|"]
    for sampler, sts in per_sampler.items():
        bests = [statistics.fmean(st.best[1]) for st in sts]
        firsts = [st.first for st in sts if st.first]
        minutes = statistics.fmean(st.seconds for st in sts) / 60
        summary.append(f"| {sampler} | {pm(bests)} | {sum(b > threshold for b in bests)} of {len(sts)} | "
                       f"{', '.join(map(str, firsts)) or '-'} | {minutes:.1f} |")

    region, fidelity = [], []
    draws = [t for st in studies if st.sampler == "random" for t in st.trials
             if t.values and not record.DUPLICATE_OF.on(t) and not record.INFEASIBLE.on(t)]
    if draws:
        region = ["| random draws with | n | val acc at the search's fidelity, % (mean) | in the good region |",
                  "|---|---:|---:|---:|", *design_rows(region_labels, draws, threshold)]
        high_fid = Fidelity(config("data=context", f"data.size={args.high_size}",
                                   f"trainer.epochs={args.high_epochs}"))
        unique = list({record.ARCH_KEY.get(t): t for t in draws}.values())[: args.fidelity_archs]
        low = [t.values[0] for t in unique]
        other = [measure(arch_of(t), 1000 + t.number) for t in unique]  # another seed than any trial's
        high_loss = [progress.measure_with_loss(f"high:{args.high_size}x{args.high_epochs}", high_fid,
                                                arch_of(t), 0) for t in unique]
        high = [acc for acc, _ in high_loss]
        # Where the higher fidelity saturates (every architecture at 100 %), its accuracies tie and tau says nothing;
        # ranked by accuracy, then by the lower validation loss, it still orders how surely each one learned.
        high_ranked = ranks([(acc, -loss) for acc, loss in high_loss])
        fidelity = ["| rankings compared | architectures | Kendall tau |", "|---|---:|---:|",
                    f"| search's fidelity vs {args.high_size} images x {args.high_epochs} epochs | {len(unique)} | "
                    f"{kendall_tau(low, high):.2f} |",
                    f"| search's fidelity vs the higher one ranked by accuracy, ties by validation loss | "
                    f"{len(unique)} | {kendall_tau(low, high_ranked):.2f} |",
                    f"| search's fidelity, the trial's seed vs another (the noise ceiling) | {len(unique)} | "
                    f"{kendall_tau(low, other):.2f} |",
                    f"| search's fidelity, mean of the two seeds vs the higher fidelity (ties by loss) | "
                    f"{len(unique)} | {kendall_tau([(a + b) / 2 for a, b in zip(low, other)], high_ranked):.2f} |",
                    *oneshot_rows(args, cfg, search_fid, unique, low, other, high_ranked),
                    "", f"Spread at the search's fidelity {100 * (max(low) - min(low)):.1f} pp, at the higher "
                    f"{100 * (max(high) - min(high)):.1f} pp; one seed to another moves an architecture by "
                    f"{100 * statistics.fmean(abs(a - b) for a, b in zip(low, other)):.1f} pp on average."]

    d = cfg["data"]
    print(f"data=context ({d['size']} generated images, {d['val_size']} for validation), {name}, gc_full, "
          f"{cfg['trainer']['epochs']} epochs per trial, {args.trials} trials per study, no pruning, no enqueued "
          f"references; sampler seeds {args.seeds}; top {args.confirm_k} of each study confirmed with seeds "
          f"{args.confirm_seeds}. {describe_machine()}; {time.perf_counter() - t0:.0f} s in this run\n")
    print(f"References with the confirmation seeds: plain {pm(ref['plain'])} %, paper's GC {pm(ref['paper GC'])} %; "
          f"good region: above {100 * threshold:.1f} %\n")
    for table in (rows, summary, region, fidelity):
        if table:
            print("\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
