"""Transfer with no model hub: does fine-tuning a pretrained backbone make the search's signal clearer per CPU-minute?

    python -m benchmarks.transfer [--trials 16] [--seeds 3]

1. ``+experiment=transfer``'s pretraining: the plain tiny ResNet trained on Fashion-MNIST classes 0-4 (once; the
   file is reused on later runs).
2. Two searches of the same budget on classes 5-9 at the proxy fidelity (6,000 training images, 4 epochs): fine-tuning
   that backbone (``trainer=finetune``) and from scratch (``trainer=proxy``), pruning off in both (a pruned trial's
   value is an early epoch's, and under fine-tuning the first epoch trains the blocks alone, which would judge the
   designs by their start). Per study: the noise floor (pooled seed-to-seed std of its references), the spread of its
   completed searched trials, their ratio, how many searched trials lie beyond the noise band around the plain
   backbone (better / worse), seconds per trial.
3. The plain backbone, the paper's GC and each study's best architecture, trained by both recipes over ``--seeds``
   seeds: test accuracy mean ± std on classes 5-9, delta to the plain backbone (paired by seed) and whether it is
   beyond the seeds' noise (|mean delta| > 2 x its standard error).

Everything runs on the CPU; the CPU is named in the output. Results go to ``--root`` (default benchmarks/.transfer).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import config, spread
from gcnas.arch import Architecture
from gcnas.backbones import BackboneWeights
from gcnas.data import load_data
from gcnas.search import record, run_search
from gcnas.train.one import train_architecture

HERE = Path(__file__).resolve().parent


def search(root: Path, trials: int, finetune: bool):
    """One search of ``trials`` trials on classes 5-9, fine-tuning the pretrained backbone or from scratch, and what
    its study says about the noise and the searched trials."""
    import optuna

    from gcnas.search.summary import noise_floor

    over = ["+experiment=transfer", f"paths.root={root}", f"study.n_trials={trials}", "pruner=none"]
    if not finetune:
        over += ["trainer=proxy", "backbone.pretrained_file=null", "pretrain=null",
                 "study.name=transfer-scratch-gc_full-gcnas_resnet_tiny-fashion_mnist5-9"]
    cfg = config(*over)
    t0 = time.perf_counter()
    result = run_search(cfg)
    seconds = time.perf_counter() - t0
    study = optuna.load_study(study_name=result.study_name, storage=f"sqlite:///{root}/studies.db")
    done = [t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
            if not record.DUPLICATE_OF.on(t)]  # trained, not pruned, not a repeat of another trial's result
    searched = [t for t in done if record.ROLE.get(t) == "searched"]
    floor = noise_floor(study)
    trial_s = [record.WALL_TIME_S.get(t) for t in done if record.WALL_TIME_S.on(t)]
    best = max(searched, key=lambda t: t.values[0])
    deltas = [t.values[0] - floor.baseline_mean for t in searched]
    return {"study": result.study_name, "seconds": seconds, "trial_s": statistics.mean(trial_s),
            "noise": floor.std, "spread": statistics.stdev(t.values[0] for t in searched),
            "better": sum(d > floor.band for d in deltas), "worse": sum(d < -floor.band for d in deltas),
            "n_searched": len(searched), "best": Architecture.from_yaml(record.architecture_of(study, best)),
            "best_val": best.values[0], "cfg": cfg}


def compare(c: dict, archs: dict[str, Architecture], seeds: int) -> list[dict]:
    """Each architecture, fine-tuned and from scratch, over seeds: test accuracy (classes 5-9)."""
    data = load_data(c["data"])
    finetune = {k: v for k, v in c["trainer"].items() if k != "name"}
    scratch = {k: v for k, v in config("trainer=proxy")["trainer"].items() if k != "name"}
    file = c["backbone"]["pretrained_file"]
    rows = []
    for regime, recipe, pretrained_file in (("fine-tuned", finetune, file), ("from scratch", scratch, None)):
        for name, arch in archs.items():
            accs, secs = [], []
            for seed in range(seeds):
                run = train_architecture(arch, data, recipe, seed=seed, weights=BackboneWeights(file=pretrained_file),
                                         cost=False)
                secs.append(run.seconds)
                accs.append(run.result.test_acc)
            rows.append({"regime": regime, "model": name, "accs": accs, "seconds": statistics.mean(secs)})
            print(f"  {regime:12s} {name:28s} {spread(accs, 100)}  ({statistics.mean(secs):.1f} s/run)", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=16, help="study.n_trials of each search (6 are references)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--root", type=Path, default=HERE / ".transfer")
    args = p.parse_args()
    from gcnas.machine import cpu_model
    from gcnas.space import paper_default_architecture
    from gcnas.backbones import list_sites

    torch.set_num_threads(2)
    args.root.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_model()}, {torch.get_num_threads()} torch threads", flush=True)
    ft = search(args.root, args.trials, finetune=True)  # pretrains the backbone first, once
    pretrained = Path(str(ft["cfg"]["backbone"]["pretrained_file"])).with_suffix(".json")
    print(f"pretrained backbone: {pretrained.read_text()}", flush=True)
    sc = search(args.root, args.trials, finetune=False)
    print("\n| search (classes 5-9) | trials (searched, distinct) | s/trial | noise floor σ (pp) | spread of searched "
          "(pp) | spread / σ | searched beyond the noise: better / worse | best searched val |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in (("fine-tuning the pretrained backbone", ft), ("from scratch", sc)):
        print(f"| {label} | {args.trials} ({r['n_searched']}) | {r['trial_s']:.1f} | {100 * r['noise']:.2f} | "
              f"{100 * r['spread']:.2f} | {r['spread'] / r['noise']:.2f} | {r['better']} / {r['worse']} | "
              f"{100 * r['best_val']:.2f} |")
    kw = {"num_classes": 5, "in_chans": 1}
    from gcnas.search.summary import describe_architecture

    archs = {"plain": Architecture("gcnas_resnet_tiny", kw, ()),
             "paper GC": paper_default_architecture("gcnas_resnet_tiny", list_sites("gcnas_resnet_tiny", **kw), kw),
             "best of fine-tune search": Architecture("gcnas_resnet_tiny", kw, ft["best"].placements),
             "best of scratch search": Architecture("gcnas_resnet_tiny", kw, sc["best"].placements)}
    for name in ("best of fine-tune search", "best of scratch search"):
        print(f"{name}: {describe_architecture(archs[name])}")
    print(f"\nComparison over seeds 0-{args.seeds - 1} (test accuracy on classes 5-9):", flush=True)
    rows = compare(ft["cfg"], archs, args.seeds)
    print("\n| recipe | model | test acc % (mean ± std) | vs plain, paired (pp) | beyond noise | s/run |\n"
          "|---|---|---:|---:|---|---:|")
    for r in rows:
        plain = next(q for q in rows if q["regime"] == r["regime"] and q["model"] == "plain")
        d = [a - b for a, b in zip(r["accs"], plain["accs"])]
        if r["model"] == "plain":
            delta, beyond = "", ""
        else:
            m, s = statistics.mean(d), statistics.stdev(d) if len(d) > 1 else 0.0
            delta = f"{100 * m:+.2f} ± {100 * s:.2f}"
            beyond = "yes" if abs(m) > 2 * s / max(1, len(d)) ** 0.5 else "no"
        print(f"| {r['regime']} | {r['model']} | {spread(r['accs'], 100)} | {delta} | {beyond} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
