"""Candidate one-shot scores, side by side: which way of reading a trained supernet ranks architectures as standalone
training does.

The test bench for a better ``search.supernet_score``. It measures the sample ``benchmarks/oneshot.py`` measures
(same options, same caches: ``--workdir`` and ``--cache`` reuse its supernets and standalone trainings), then reads
every architecture once per supernet: validation accuracy and loss (:func:`gcnas.oneshot.score_with_loss`), and the
gradient of the training loss on ``search.calib_images`` training images with respect to every weight
(:func:`gcnas.oneshot.loss_gradients`: the block weights as :func:`gcnas.oneshot.gradient_score` sees them, and the
backbone's). Every candidate below is computed from those readings:

* ``gradient``: the squared gradient of the blocks' weights (what ``search.supernet_score=gradient`` scores; checked
  equal to :func:`gcnas.oneshot.gradient_score` on the first architecture of each supernet);
* ``gradient per weight``: the same, each tensor's divided by its number of elements (small blocks not penalised);
* ``gradient / weight norm``: each site's squared gradient over its squared weights, summed over the sites
  (insensitive to how large a site's weights grew);
* ``gradient norm per site``: the sites' gradient norms (not squared) summed (one strong site counts less);
* ``|gradient x weight|``: SNIP's saliency over the block weights;
* ``backbone gradient``: the squared gradient of the backbone's weights;
* ``accuracy``: validation accuracy, ties broken by the lower loss (``search.supernet_score=accuracy``);
* ``validation loss``: the loss alone (lower first);
* ``gradient + validation loss``, ``gradient + accuracy``: the sums of the two rankings over the sample (not a score
  one trial can compute alone: it needs the sample);
* ``gradient and loss vs reference``: what ``search.supernet_score=gradient_and_loss`` scores, the same two readings
  placed among those of a fixed reference sample of the space (:func:`gcnas.oneshot.reference_architectures`, 32
  draws, measured on each supernet) rather than among the sample's: a score one trial computes alone;
* ``gradient, supernets' ranks summed``: one ranking from the sum of the supernet seeds' gradient rankings (the same
  row for each seed: its cost is every seed's supernet).

Each row gives Kendall's tau against the standalone means with each seed left out in turn (mean ± std over the
supernet seeds), as ``benchmarks/oneshot.py``'s goal line does, and the difference from one standalone seed's with its
95 % bootstrap interval over the architectures. A candidate picked as the best of these rows was picked on this
sample: judge it on a fresh one (another ``--sample-seed``) before trusting it.

Usage: python -m benchmarks.oneshot_scores [--archs 16 [16 ...]] [--sample-seed 0 [1 ...]] [--seeds 0 1 2]
                                           [--sampling uniform] [--share site stage] [--supernet-epochs N]
                                           [--supernet-seeds 0 1 2] [--threads N] [--workdir benchmarks/.oneshot]
                                           [--cache FILE] [OVERRIDE ...]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from typing import Callable

import torch

from benchmarks.common import space_of, spread
from benchmarks.oneshot import measured_sample, sample_arguments, tau_gap, trained_supernet
from gcnas.machine import describe_machine
from gcnas.oneshot import (ScoreReference, block_parameters, gradient_score, loss_gradients, reference_architectures,
                          score_with_loss)
from gcnas.stats import bootstrap_interval, noise_verdict, ranks


def readings(net, arch, x: torch.Tensor, y: torch.Tensor, val, batch_size: int) -> dict:
    """What every candidate score is computed from: accuracy and loss on the validation data; per site, the squared
    gradient, squared weights, SNIP's |g x w| and the tensors' squared gradient per element of the block weights; the
    backbone weights' squared gradient."""
    acc, loss = score_with_loss(net, arch, x, val, batch_size)
    net.set_architecture(arch)
    blocks = block_parameters(net)
    site_of = {}
    for key, block in net.choices.items():
        for p in block.parameters():
            site_of.setdefault(id(p), key)
    in_blocks = {id(p) for block in net.choices.values() for p in block.parameters()}
    backbone = [p for p in net.parameters() if id(p) not in in_blocks and p.requires_grad]
    grads = loss_gradients(net, arch, blocks + backbone, x, y, batch_size)
    sites: dict = {}
    for p, g in zip(blocks, grads):
        if g is None:
            continue
        s = sites.setdefault(site_of[id(p)], {"g2": 0.0, "w2": 0.0, "gw": 0.0, "g2n": 0.0})
        g, w = g.double(), p.detach().double()
        s["g2"] += float((g ** 2).sum())
        s["w2"] += float((w ** 2).sum())
        s["gw"] += float((g * w).abs().sum())
        s["g2n"] += float((g ** 2).sum()) / p.numel()
    backbone_g2 = float(sum((g.double() ** 2).sum() for g in grads[len(blocks):] if g is not None))
    return {"acc": acc, "loss": loss, "sites": sites, "backbone_g2": backbone_g2}


def _sum(r: dict, f: Callable[[dict], float]) -> float:
    return sum(f(s) for s in r["sites"].values())


# a score of one architecture's readings (higher first)
CANDIDATES: dict[str, Callable[[dict], object]] = {
    "gradient": lambda r: _sum(r, lambda s: s["g2"]),
    "gradient per weight": lambda r: _sum(r, lambda s: s["g2n"]),
    "gradient / weight norm": lambda r: _sum(r, lambda s: s["g2"] / s["w2"] if s["w2"] > 0 else 0.0),
    "gradient norm per site": lambda r: _sum(r, lambda s: math.sqrt(s["g2"])),
    "|gradient x weight|": lambda r: _sum(r, lambda s: s["gw"]),
    "backbone gradient": lambda r: r["backbone_g2"],
    "accuracy": lambda r: (r["acc"], -r["loss"]),
    "validation loss": lambda r: -r["loss"],
}
# rankings summed over the sample: (name, the candidates whose rankings are added)
COMBINED = {"gradient + validation loss": ("gradient", "validation loss"),
            "gradient + accuracy": ("gradient", "accuracy")}
PER_TRIAL = "gradient and loss vs reference"  # gcnas.oneshot.gradient_and_loss_score's ranking


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sampling", default="uniform", help="the supernets' search.supernet_sampling")
    sample_arguments(ap)
    args = ap.parse_args(argv)
    t_run = time.perf_counter()
    m = measured_sample(ap, args)
    cfg, fid, archs, alone, left_out = m.cfg, m.fid, m.archs, m.alone, m.left_out
    one_seed = m.one_seed()

    space = space_of(cfg, fid.data)
    x, y = fid.data.train.head(m.calib)
    reference_archs = reference_architectures(space)
    rankings: dict[tuple[str, str], list[list[float]]] = {}
    for share in args.share:
        for seed in args.supernet_seeds:
            net, _ = trained_supernet(cfg, space, fid, args.sampling, share, seed, m.epochs, args.workdir, m.tag)
            read = [readings(net, a, x, y, fid.data.val, m.batch) for a in archs]
            check = gradient_score(net, archs[-1], x, y, m.batch)
            if not math.isclose(check, CANDIDATES["gradient"](read[-1]), rel_tol=1e-6, abs_tol=1e-12):
                raise RuntimeError(f"the readings' gradient {CANDIDATES['gradient'](read[-1])} differs from "
                                   f"gradient_score's {check}: this bench no longer measures what a study scores")
            own = {c: ranks([f(r) for r in read]) for c, f in CANDIDATES.items()}
            own.update({c: [sum(v) for v in zip(*(own[p] for p in parts))] for c, parts in COMBINED.items()})
            reference = ScoreReference.measure(net, reference_archs, x, y, fid.data.val, m.batch)
            own[PER_TRIAL] = ranks([reference.place(CANDIDATES["gradient"](r), r["loss"]) for r in read])
            for c, ranked in own.items():
                rankings.setdefault((c, share), []).append(ranked)
        summed = [sum(v) for v in zip(*rankings[("gradient", share)])]
        rankings[("gradient, supernets' ranks summed", share)] = [ranks(summed)]

    d = cfg["data"]
    print(f"{len(archs)} architectures of {cfg['search_space']['name']} (RandomSampler seeds "
          f"{', '.join(map(str, args.sample_seed))}, pooled, the plain backbone included), {cfg['backbone']['name']}, "
          f"data={d['name']}{' (' + ' '.join(args.overrides) + ')' if args.overrides else ''}; standalone seeds "
          f"{', '.join(map(str, args.seeds))}; {args.sampling} supernets of {m.epochs} epochs, seeds "
          f"{', '.join(map(str, args.supernet_seeds))}; {m.calib} calibration images. {describe_machine()}; "
          f"{time.perf_counter() - t_run:.0f} s in this run\n")
    print(f"One standalone seed against the others' mean: tau {spread(one_seed)}\n")
    print("| score | sharing | tau, each seed left out (mean ± std over supernets) | minus one seed (95 % interval) |")
    print("|---|---|---:|---:|")
    target = statistics.fmean(one_seed)
    order = [*CANDIDATES, *COMBINED, PER_TRIAL, "gradient, supernets' ranks summed"]
    for (c, share), runs in sorted(rankings.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1] != "site")):
        loo = [m.left_out_tau(r) for r in runs]
        lo, hi = bootstrap_interval(tau_gap(runs, alone, left_out), len(archs))
        noise = noise_verdict(lo, hi)
        print(f"| {c} | {share} | {spread(loo)} | {statistics.fmean(loo) - target:+.2f} ({lo:+.2f} to {hi:+.2f}), "
              f"{noise} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
