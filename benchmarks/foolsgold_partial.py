"""FoolsGold under partial participation on synthetic updates: full-history vs this-round scope.

No training: each client has a fixed direction (honest: its own random one; sybils: one shared
direction), every round's update is ``shared + own direction + noise``. ``--clients`` clients,
``--per-round`` sampled uniformly each round; prints the mean FoolsGold weight α and aggregation
share of honest and malicious sampled clients, and the fraction of malicious with α = 0, for
``foolsgold-scope=all-seen`` and ``round``.

    python benchmarks/foolsgold_partial.py --clients 40 --per-round 10 --malicious 12 --rounds 100
"""

from __future__ import annotations

import argparse

import numpy as np

from fl_poison.updates import make_layout
from strategies.defenses import FoolsGold


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=40)
    ap.add_argument("--per-round", type=int, default=10)
    ap.add_argument("--malicious", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--features", type=int, default=850)
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    h, c = args.features // 10 - 1, 10
    layout = make_layout(["fc.weight", "fc.bias"], [np.zeros((c, h)), np.zeros(c)], "fc")
    p = layout.num_params
    shared = rng.normal(size=p)
    own = rng.normal(size=(args.clients, p))
    bad = np.zeros(args.clients, dtype=bool)
    bad[rng.choice(args.clients, args.malicious, replace=False)] = True
    own[bad] = rng.normal(size=p)  # the sybils' common objective
    rows = []
    for scope in ("all-seen", "round"):
        strat = FoolsGold(scope=scope, clients_per_round=args.per_round)
        r = np.random.default_rng(args.seed + 1)  # same sampling and noise for both scopes
        wv = {True: [], False: []}
        share = {True: [], False: []}
        for rnd in range(1, args.rounds + 1):
            sel = np.sort(r.choice(args.clients, args.per_round, replace=False))
            upd = 0.5 * shared + own[sel] + args.noise * r.normal(size=(len(sel), p))
            agg = strat.aggregate_updates(upd, np.ones(len(sel)), layout, sel.tolist(), rnd)
            for i, cl in enumerate(sel):
                wv[bool(bad[cl])].append(agg.info["wv"][i])
                share[bool(bad[cl])].append(agg.weights[i])
        zero = np.mean(np.asarray(wv[True]) == 0)
        rows.append((scope, np.mean(wv[False]), np.mean(wv[True]), np.mean(share[False]), np.mean(share[True]), zero))
    print(f"{args.clients} clients, {args.per_round} per round, {args.malicious} sybils, {args.rounds} rounds, "
          f"F={p}, noise {args.noise}, seed {args.seed}")
    print("| foolsgold-scope | mean α honest | mean α malicious | mean share honest | mean share malicious | malicious with α=0 |")
    print("|---|---|---|---|---|---|")
    for s, a, b, c_, d, z in rows:
        print(f"| {s} | {a:.3f} | {b:.3f} | {c_:.3f} | {d:.3f} | {z:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
