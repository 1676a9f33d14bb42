"""One thin Strategy per defense: parameters in, pure function called, nothing else.

Each class is usable directly in a Flower ServerApp (``strategy.start(...)``)
outside fl-poison: the math lives in the pure functions, the Flower plumbing
and per-round reporting in :class:`strategies.base.DefenseStrategy`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from strategies import foolsgold as fg
from strategies import lfighter as lf
from strategies import norm_clipping, pca_filter, robust
from strategies.aggregation import Aggregation
from strategies.base import DefenseStrategy
from strategies.defaults import NDC_BOUND, NDC_MODE, TRIM_BETA
from strategies.fedavg_math import fedavg


class FedAvgDefense(DefenseStrategy):
    """Plain example-weighted averaging: the no-defense baseline."""

    name = "fedavg"

    def aggregate_updates(self, updates, weights, layout, clients, server_round) -> Aggregation:
        return fedavg(updates, weights, layout)


class Median(DefenseStrategy):
    """Coordinate-wise median (Yin et al. 2018), as Flower's FedMedian."""

    name = "median"

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return robust.median(updates, weights, layout)


class TrimmedMean(DefenseStrategy):
    """Coordinate-wise trimmed mean, as Flower's FedTrimmedAvg (``beta`` cut from each end)."""

    name = "trimmed-mean"

    def __init__(self, *, beta: float = TRIM_BETA, **kw: Any) -> None:
        super().__init__(**kw)
        self.beta = beta

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return robust.trimmed_mean(updates, weights, layout, beta=self.beta)


class RepeatedMedian(DefenseStrategy):
    """Siegel's repeated median (LFighter's RMedian baseline)."""

    name = "repeated-median"

    def __init__(self, *, reweight: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self.reweight = reweight

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return robust.repeated_median(updates, weights, layout, reweight=self.reweight)


class _ByzantineBudget(DefenseStrategy):
    """Krum-family rules: ``num_byzantine`` = f, or -1 for the largest f the round's size tolerates."""

    def __init__(self, *, num_byzantine: int = -1, **kw: Any) -> None:
        super().__init__(**kw)
        self.num_byzantine = num_byzantine

    def f_for(self, k: int) -> int:
        from fl_poison.config import byzantine_budget

        return byzantine_budget(self.name, k, self.num_byzantine)


class Krum(_ByzantineBudget):
    """Krum (Blanchard et al. 2017): the single update closest to its K − f − 2 neighbours.

    ``krum_distance``: "squared" (paper, Flower) | "lfighter-code" (see robust.krum_scores).
    """

    name = "krum"

    def __init__(self, *, krum_distance: str = "squared", **kw: Any) -> None:
        super().__init__(**kw)
        self.distance = krum_distance

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return robust.krum(updates, weights, layout, num_byzantine=self.f_for(len(updates)),
                           distance=self.distance)


class MultiKrum(_ByzantineBudget):
    """Multi-Krum: the average of the ``keep`` best-scored updates (-1: K − f)."""

    name = "multi-krum"

    def __init__(self, *, keep: int = -1, krum_distance: str = "squared", **kw: Any) -> None:
        super().__init__(**kw)
        self.keep, self.distance = keep, krum_distance

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        f = self.f_for(len(updates))
        m = self.keep if self.keep > 0 else max(len(updates) - f, 1)
        return robust.multi_krum(updates, weights, layout, num_byzantine=f, num_selected=min(m, len(updates)),
                                 distance=self.distance)


class Bulyan(_ByzantineBudget):
    """Bulyan (El Mhamdi et al. 2018): ``selection`` "iterated" (paper) | "flower" (Flower's one-pass shortcut)."""

    name = "bulyan"

    def __init__(self, *, selection: str = "iterated", **kw: Any) -> None:
        super().__init__(**kw)
        self.selection = selection

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return robust.bulyan(updates, weights, layout, num_byzantine=self.f_for(len(updates)),
                             selection=self.selection)


class NormDifferenceClipping(DefenseStrategy):
    """NDC (Sun et al. 2019): clip or drop updates whose norm exceeds a bound."""

    name = "ndc"

    def __init__(self, *, bound: float | str = NDC_BOUND, mode: str = NDC_MODE, **kw: Any) -> None:
        super().__init__(**kw)
        self.bound = bound if bound == "median" else float(bound)
        self.mode = mode

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        return norm_clipping.ndc(updates, weights, layout, bound=self.bound, mode=self.mode)


class FoolsGold(DefenseStrategy):
    """FoolsGold (Fung et al. 2020) with per-client accumulated history across rounds.

    ``scope``: "all-seen" (original FoolsGold, LFighter's baseline: similarity over every client
    seen so far) | "round" (only this round's clients). History: ``[clients seen, F]``.
    """

    name = "foolsgold"

    def __init__(self, *, features: str = "output-layer", scope: str = "all-seen", **kw: Any) -> None:
        super().__init__(**kw)
        if scope not in fg.SCOPES:
            raise ValueError(f"scope must be one of {fg.SCOPES}, got {scope!r}")
        self.features, self.scope = features, scope
        self.history: dict[int, np.ndarray] = {}

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        feats = fg.foolsgold_features(updates, layout, self.features)
        for c, row in zip(clients, feats):
            self.history[c] = self.history.get(c, 0.0) + row
        if self.scope == "round":
            hist = np.stack([self.history[c] for c in clients])
            return fg.foolsgold(updates, weights, layout, history=hist, features=self.features)
        order = {c: i for i, c in enumerate(self.history)}
        hist = np.stack(list(self.history.values()))
        return fg.foolsgold(updates, weights, layout, history=hist, features=self.features,
                            sampled=np.array([order[c] for c in clients]))


class PCAFilter(DefenseStrategy):
    """Tolpegin et al.'s PCA view of source-neuron updates, turned into a filter."""

    name = "pca"

    def __init__(self, *, source_class: int | None = None, visualise_only: bool = False, seed: int = 0,
                 history_rounds: int = 1, **kw: Any) -> None:
        super().__init__(**kw)
        self.source_class, self.visualise_only, self.seed = source_class, visualise_only, seed
        self.history_rounds = history_rounds  # 1: this round alone; -1: every round (Tolpegin's Alg. 1 pools)
        self.past: list[np.ndarray] = []  # earlier rounds' output rows, oldest first

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        keep = len(self.past) if self.history_rounds < 0 else self.history_rounds - 1
        past = self.past[len(self.past) - keep:] if keep > 0 else []
        agg = pca_filter.pca_filter(updates, weights, layout, source_class=self.source_class,
                                    visualise_only=self.visualise_only, seed=self.seed + server_round,
                                    history_rows=np.concatenate(past) if past else None)
        if self.history_rounds != 1:
            self.past = past + [layout.output_rows(np.atleast_2d(np.asarray(updates, dtype=np.float64)))]
        return agg


class LFighter(DefenseStrategy):
    """LFighter (Jebreel et al.): cluster the two most-changed output neurons' gradients."""

    name = "lfighter"

    def __init__(self, *, mode: str = "mild", seed: int = 0, min_samples: int | None = None,
                 include_bias: bool = False, n_init: int = lf.N_INIT, score: str = "paper", **kw: Any) -> None:
        super().__init__(**kw)
        self.mode, self.seed, self.min_samples = mode, seed, min_samples
        self.include_bias, self.n_init, self.score = include_bias, n_init, score

    def aggregate_updates(self, updates, weights, layout, clients, server_round):
        # one k-means seed for the whole run (issue 8; it was seed + round), as the authors' random_state=0
        return lf.lfighter(updates, weights, layout, mode=self.mode, seed=self.seed, min_samples=self.min_samples,
                           include_bias=self.include_bias, n_init=self.n_init, score=self.score)
