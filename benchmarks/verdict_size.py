"""The sequential verdict's size and power, by Monte Carlo.

Pairs of configurations on fresh test examples (logits N(2, 2): easy and hard examples) and
fresh seeds: each seed shifts every example's logit by one draw of N(0, shared) (a better or
worse model altogether), then each example is right or wrong on its own. The candidate's
logits are the baseline's plus ``shift`` (0: no gain). The verdict starts at 3 seeds and adds
one per look up to 6, as ``settle`` does, judged two ways:

- ``samtune``: ``gain_evidence(..., first_and_most=(3, 6))`` and ``decide``, i.e. t at the
  seed terms' df times the look's O'Brien-Fleming bound over one look's z (at the information
  fractions the evidence's variance split gives the 4 looks);
- ``z=2 each look``: the same evidence judged at z = 2 at every look.

Prints the share of pairs called ``use`` (the size where shift is 0, the power otherwise) and
the mean seeds per side.

    python benchmarks/verdict_size.py                # 1,000 pairs per cell, about a minute
    python benchmarks/verdict_size.py --pairs 200    # quicker
    python benchmarks/verdict_size.py --one-look 3   # one look at 3 seeds (no sequential design)
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from samtune.search._evidence import decide, gain_evidence

SHARED = (0.0, 0.1, 0.3)
SHIFTS = (0.0, 0.08, 0.15)


def _record(masks: list[torch.Tensor]) -> dict:
    return {"correct": masks, "test_accuracy": {"per_seed": [m.double().mean().item() for m in masks]}}


def _at_z2(ev: dict) -> dict:
    """``ev`` judged at z = 2, for the bound and the futility alike (no t, no looks)."""
    drop = ("z_candidates", "df", "looks", "look", "look_factors")
    return {**{k: v for k, v in ev.items() if k not in drop}, "z": 2.0}


def simulate(pairs: int, shared: float, shift: float, n_test: int = 700, seed: int = 0,
             one_look: int | None = None) -> dict:
    rng = np.random.default_rng(seed)
    out = {"samtune": [0, 0], "z=2 each look": [0, 0]}  # uses, seeds summed
    for _ in range(pairs):
        logit = rng.normal(2.0, 2.0, n_test)
        sides = [[torch.from_numpy(rng.random(n_test) < 1 / (1 + np.exp(-(logit + s + rng.normal(0, shared)))))
                  for _ in range(6)] for s in (shift, 0.0)]
        if one_look is not None:  # one look at that many seeds: no sequential design at all
            ev = gain_evidence(_record(sides[0][:one_look]), _record(sides[1][:one_look]), None,
                               first_and_most=(one_look, one_look))
            for rule in out:
                out[rule][0] += decide(ev if rule == "samtune" else _at_z2(ev), one_look) == "use"
                out[rule][1] += one_look
            continue
        for rule in out:
            seeds = 3
            while True:
                ev = gain_evidence(_record(sides[0][:seeds]), _record(sides[1][:seeds]), None,
                                   first_and_most=(3, 6))
                verdict = decide(ev if rule == "samtune" else _at_z2(ev), 6)
                if verdict != "open" or seeds == 6:
                    break
                seeds += 1
            out[rule][0] += verdict == "use"
            out[rule][1] += seeds
    return {rule: {"use": uses / pairs, "seeds": total / pairs} for rule, (uses, total) in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=1000)
    p.add_argument("--json", action="store_true")
    p.add_argument("--one-look", type=int, default=None, metavar="SEEDS",
                   help="judge each pair once, at SEEDS seeds (1-6), instead of sequentially")
    args = p.parse_args(argv)
    if args.pairs < 1:
        print("error: --pairs must be at least 1", file=sys.stderr)
        return 2
    if args.one_look is not None and not 1 <= args.one_look <= 6:
        print("error: --one-look must be between 1 and 6 seeds", file=sys.stderr)
        return 2
    rows = [{"shared": sh, "shift": sf, **simulate(args.pairs, sh, sf, seed=i, one_look=args.one_look)}
            for i, (sh, sf) in enumerate((sh, sf) for sf in SHIFTS for sh in SHARED)]
    if args.json:
        print(json.dumps(rows))
        return 0
    print("| logit shift | shared seed sd | samtune: use / seeds | z=2 each look: use / seeds |")
    print("|---|---|---|---|")
    for r in rows:
        a, b = r["samtune"], r["z=2 each look"]
        print(f"| {r['shift']} | {r['shared']} | {a['use']:.3f} / {a['seeds']:.2f} | "
              f"{b['use']:.3f} / {b['seeds']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
