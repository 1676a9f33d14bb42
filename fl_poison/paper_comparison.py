"""A paper's numbers as data: ``[paper]`` cells, ordering claims, pooling of our runs, and the verdict rule.

An experiment file's ``[paper]`` section keeps its prose keys (``finding``, ``table_1``, ...: strings)
and may add the numbers the paper reports, so that ``fl-poison report`` can set ours beside them::

    [paper]
    finding = "..."
    claims = [["ada-ata-eps0.1", ">", "lf-ata-eps0.1"],     # orderings the paper states, checked on ours
              ["lf-ata-eps0.1", ">", "none-ata-eps0.1"]]    # right side: a cell id or a number

    [paper.cell-defaults]         # any cell key except id / label; a cell's own value wins (no merging)
    tolerance = 0.05
    rounds = 50

    [[paper.cells]]
    id = "lf-ata-eps0.1"                           # unique; claims name cells by it
    label = "LF ATA, eps = 0.1"                    # optional, defaults to the id
    paper = 0.912                                  # the paper's value; absent or nan = a reference row ("—")
    metric = "max_over_rounds.ata"                 # a summary.json metric (see metric_names())
    sweep = "table1-eps0.1"                        # the [sweep.NAME] whose runs this cell reads (optional)
    where = { attack = "label-flip", malicious-fraction = 0.1 }   # run key = value filters
    average-over = ["target-class"]                # averaged within a seed first (LF: mean over targets)
    tolerance = 0.05                               # absolute: |ours - paper| <= tolerance is "reproduced"
    rounds = 50                                    # the paper's rounds; ours differing is said in the reason

Ours for a cell: the finished runs of ``sweep`` whose config matches ``where``; within each seed the mean
over the ``average-over`` values, then the mean ± sample std (ddof 1; 0 for one seed) over seeds.

Verdicts (:func:`verdict`): *reproduced* when |ours − paper| ≤ tolerance; else *same direction* when at
least one claim on the cell holds on ours and none fails (a claim with no number of ours on one side is
"unchecked"); else *contradicted*. Two more
say that no comparison was possible: *reference* (the cell has no paper value) and *not measured* (no run,
or runs that differ in a key the cell neither filters nor averages). Every verdict carries its reason, and
a difference between our rounds and the cell's ``rounds`` is always part of it.
"""

from __future__ import annotations

import difflib
import json
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from fl_poison.config import ConfigError, stored_value
from fl_poison.measurement import final_columns, owners_of, section_metrics

#: summary.json top-level numbers (the final round's value, or run-wide).
FINAL_METRICS = ("accuracy", "loss", "source_accuracy", "attack_success_rate", "ata", "max_ata", "mta",
                 "source_accuracy_cv", "wall_seconds")
#: summary.json blocks holding one number per per-round column (fl_poison.results.last10_keys).
ROUND_AGGREGATES = ("last10", "mean_over_rounds", "max_over_rounds", "min_over_rounds")
#: other nested numbers of summary.json.
NESTED_METRICS = ("detection.precision", "detection.recall", "detection.f1", "detection.last10.precision",
                  "detection.last10.recall", "detection.last10.f1", "detection.mean_weight_honest",
                  "detection.mean_weight_malicious")
#: keys of one cell; ``id`` and ``metric`` are required, ``tolerance`` whenever ``paper`` is a number.
CELL_KEYS = ("id", "label", "paper", "metric", "sweep", "where", "average-over", "tolerance", "rounds")
#: [paper] keys that hold data rather than prose.
DATA_KEYS = ("cells", "claims", "cell-defaults")
OPS = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le}
#: config keys that never distinguish settings (replicates and output locations).
NOT_A_SETTING = ("seed", "run-name", "out-dir", "figures")

REPRODUCED, SAME_DIRECTION, CONTRADICTED = "reproduced", "same direction", "contradicted"
REFERENCE, NOT_MEASURED = "reference", "not measured"


class PaperError(ConfigError):
    """A bad ``[paper]`` table: one line naming the file, the cell and the problem (the CLI exits 2)."""

    def __init__(self, source: str, where: str, problem: str) -> None:
        ValueError.__init__(self, f"{source} [paper] {where}: {problem}")
        self.key, self.value, self.allowed = f"[paper] {where}", source, problem

    def __str__(self) -> str:
        return self.args[0]


def metric_names() -> tuple[str, ...]:
    """Every metric a cell may name: summary.json paths, dots between nested keys (plug-ins' included)."""
    from fl_poison.results import last10_keys

    return (FINAL_METRICS + final_columns() + tuple(f"{a}.{k}" for a in ROUND_AGGREGATES for k in last10_keys())
            + NESTED_METRICS + section_metrics())


def read_metric(summary: Mapping[str, Any], metric: str) -> float | None:
    """The metric's number in one summary.json; None when absent, null or NaN."""
    v: Any = summary
    for part in metric.split("."):
        v = v.get(part) if isinstance(v, Mapping) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def metric_requirement(metric: str) -> tuple[str, Any] | None:
    """(what it needs, predicate on a run config) for metrics only some runs write, else None."""
    base = metric.rsplit(".", 1)[-1]
    if base in ("ata", "max_ata", "mta", "source_accuracy", "source_accuracy_cv"):
        return "a source-class (runs with source-class = -1 write no value)", lambda c: c.get("source-class", -1) >= 0
    if base == "attack_success_rate":
        return "a source-class and a target-class", lambda c: min(c.get("source-class", -1), c.get("target-class", -1)) >= 0
    if owners := owners_of(metric):  # a plug-in's output: written by runs of those plug-ins only
        text = " or ".join(f"{kind} = {name}" for kind, name in owners)
        return text, lambda c: any(c.get(kind) == name for kind, name in owners)
    if metric.startswith("detection."):
        return "an attack (attack = none writes no detection)", lambda c: c.get("attack", "none") != "none"
    return None


# ------------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Cell:
    id: str
    label: str
    paper: float | None  # None: a reference row, ours only
    metric: str
    sweep: str | None = None
    where: tuple[tuple[str, Any], ...] = ()
    average_over: tuple[str, ...] = ()
    tolerance: float | None = None
    rounds: int | None = None

    def matches(self, cfg: Mapping[str, Any]) -> bool:
        return all(_same(stored_value(cfg, k), v) for k, v in self.where)

    def describe(self) -> str:
        sel = ", ".join(f"{k}={v}" for k, v in self.where) or "every run"
        return f"sweep {self.sweep}, {sel}" if self.sweep else sel


@dataclass(frozen=True)
class Claim:
    left: str
    op: str
    right: str | float

    def text(self) -> str:
        return f"{self.left} {self.op} {self.right:g}" if isinstance(self.right, float) else \
            f"{self.left} {self.op} {self.right}"


@dataclass
class PaperTable:
    source: str
    cells: list[Cell] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)

    def cell(self, cid: str) -> Cell:
        return next(c for c in self.cells if c.id == cid)

    def claims_of(self, cid: str) -> list[Claim]:
        return [c for c in self.claims if cid in (c.left, c.right)]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _closest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _filter_value(source: str, where: str, key: str, value: Any) -> Any:
    """A where-value in the run key's own type, checked as a run config would be."""
    from fl_poison.config import KEYS, coerce

    if key not in KEYS:
        raise PaperError(source, where, f"where key '{key}' is not a run key{_closest(key, KEYS)}; "
                         "see `fl-poison keys`")
    k = KEYS[key]
    try:
        v = coerce(k, value)
    except ConfigError as exc:
        raise PaperError(source, where, f"where {key} = {value!r}: {exc.allowed}") from None
    if (k.choices is not None and v not in k.choices) or (k.check is not None and not k.check(v)):
        allowed = f"one of {', '.join(k.choices)}" if k.choices else k.allowed
        raise PaperError(source, where, f"where {key} = {value!r}: {allowed}")
    return v


def _parse_cell(source: str, raw: Any, defaults: Mapping[str, Any], index: int, names: set[str]) -> Cell:
    if not isinstance(raw, Mapping):
        raise PaperError(source, f"cells[{index}]", "each cell is a table ([[paper.cells]])")
    cid = raw.get("id")
    where = f"cell '{cid}'" if isinstance(cid, str) and cid else f"cells[{index}]"
    unknown = [k for k in raw if k not in CELL_KEYS]
    if unknown:
        raise PaperError(source, where, f"unknown key '{unknown[0]}'{_closest(unknown[0], CELL_KEYS)}; "
                         f"a cell takes {', '.join(CELL_KEYS)}")
    d = {**defaults, **raw}
    if not isinstance(cid, str) or not cid.strip():
        raise PaperError(source, where, "missing value for 'id' (a non-empty string naming the cell)")
    if "metric" not in d:
        raise PaperError(source, where, "missing value for 'metric' (a summary.json metric, e.g. max_over_rounds.ata)")
    metric = d["metric"]
    if not isinstance(metric, str) or metric not in names:
        hint = _closest(str(metric), names)
        raise PaperError(source, where, f"metric '{metric}' is not a metric any run writes{hint}; allowed: "
                         f"{', '.join(FINAL_METRICS + final_columns())}, {'/'.join(ROUND_AGGREGATES)}"
                         f".<per-round column>, {', '.join(NESTED_METRICS + section_metrics())}")
    paper = d.get("paper")
    if paper is not None and not _number(paper):
        raise PaperError(source, where, f"paper = {paper!r}: a number (nan or absent for a reference row)")
    paper = None if paper is None or math.isnan(paper) else float(paper)
    tol = d.get("tolerance")
    if tol is not None and (not _number(tol) or not math.isfinite(tol) or tol < 0):
        raise PaperError(source, where, f"tolerance = {tol!r}: a number >= 0 (absolute, in the metric's units)")
    if paper is not None and tol is None:
        raise PaperError(source, where, "missing value for 'tolerance' (a number >= 0) for a cell with a paper value")
    rounds = d.get("rounds")
    if rounds is not None and (not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1):
        raise PaperError(source, where, f"rounds = {rounds!r}: an integer >= 1 (the paper's number of rounds)")
    sweep = d.get("sweep")
    if sweep is not None and (not isinstance(sweep, str) or not sweep):
        raise PaperError(source, where, f"sweep = {sweep!r}: the name of a [sweep.NAME] grid")
    filters = d.get("where", {})
    if not isinstance(filters, Mapping):
        raise PaperError(source, where, "where: a table of run key = value, e.g. { attack = \"label-flip\" }")
    avg = d.get("average-over", [])
    if not isinstance(avg, list) or not all(isinstance(k, str) for k in avg):
        raise PaperError(source, where, f"average-over = {avg!r}: a list of run keys, e.g. [\"target-class\"]")
    from fl_poison.config import KEYS

    for k in avg:
        if k not in KEYS:
            raise PaperError(source, where, f"average-over key '{k}' is not a run key{_closest(k, KEYS)}")
        if k in NOT_A_SETTING:
            raise PaperError(source, where, f"average-over key '{k}': seeds are always pooled, output keys never vary")
        if k in filters:
            raise PaperError(source, where, f"'{k}' is both filtered (where) and averaged over (average-over)")
    return Cell(cid, str(d.get("label") or cid), paper, metric, sweep,
                tuple((k, _filter_value(source, where, k, v)) for k, v in filters.items()), tuple(avg),
                None if tol is None else float(tol), rounds)


def _parse_claim(source: str, raw: Any, index: int, cells: dict[str, Cell]) -> Claim:
    where = f"claims[{index}]"
    if not isinstance(raw, list) or len(raw) != 3 or raw[1] not in OPS:
        raise PaperError(source, where, f"{raw!r}: [cell id, one of {' '.join(OPS)}, cell id or number]")
    left, op, right = raw
    for side in (left, right):
        if isinstance(side, str) and side not in cells:
            raise PaperError(source, where, f"'{side}' is not a cell id{_closest(side, cells)}")
    if not isinstance(left, str):
        raise PaperError(source, where, f"{left!r}: the left side is a cell id")
    if not isinstance(right, str) and not (_number(right) and math.isfinite(right)):
        raise PaperError(source, where, f"{right!r}: the right side is a cell id or a finite number")
    claim = Claim(left, op, right if isinstance(right, str) else float(right))
    a, b = cells[left].paper, cells[right].paper if isinstance(right, str) else float(right)
    if a is not None and b is not None and not OPS[op](a, b):
        raise PaperError(source, where, f"{claim.text()} contradicts the paper's own values ({a:g} vs {b:g})")
    return claim


def parse_paper(paper: Mapping[str, Any], source: str = "experiment file") -> PaperTable:
    """The ``[paper]`` section as a :class:`PaperTable` (no cells: an empty table); PaperError on bad input."""
    for k, v in paper.items():
        if k not in DATA_KEYS and not isinstance(v, str):
            raise PaperError(source, f"key '{k}'", f"prose keys hold strings; the numbers go in "
                             f"{', '.join(DATA_KEYS)}{_closest(k, DATA_KEYS)}")
    defaults = paper.get("cell-defaults", {})
    if not isinstance(defaults, Mapping):
        raise PaperError(source, "cell-defaults", "a table ([paper.cell-defaults]) of cell keys")
    bad = [k for k in defaults if k not in CELL_KEYS or k in ("id", "label")]
    if bad:
        raise PaperError(source, "cell-defaults", f"unknown key '{bad[0]}'; it takes any cell key but id and label")
    raw_cells = paper.get("cells", [])
    if not isinstance(raw_cells, list):
        raise PaperError(source, "cells", "an array of tables ([[paper.cells]])")
    names = set(metric_names())
    cells: dict[str, Cell] = {}
    for i, raw in enumerate(raw_cells):
        cell = _parse_cell(source, raw, defaults, i, names)
        if cell.id in cells:
            raise PaperError(source, f"cell '{cell.id}'", "a second cell with this id (ids are unique)")
        cells[cell.id] = cell
    raw_claims = paper.get("claims", [])
    if not isinstance(raw_claims, list):
        raise PaperError(source, "claims", "a list of [cell id, op, cell id or number]")
    claims = [_parse_claim(source, c, i, cells) for i, c in enumerate(raw_claims)]
    return PaperTable(source, list(cells.values()), claims)


def check_planned(table: PaperTable, sweeps: Iterable[str], planned: Mapping[str, Sequence[Mapping[str, Any]]]
                  ) -> list[str]:
    """Cells against the resolved configs of the sweeps being planned: PaperError when a cell can get nothing.

    ``sweeps`` are the grids the file defines, ``planned`` the configs per grid planned now. A cell whose
    filters match no planned point, or whose metric none of the matching runs writes, is an error; a cell
    naming a grid the file lacks is returned as a warning (it may be added later).
    """
    sweeps = set(sweeps)
    warnings = []
    for cell in table.cells:
        if cell.sweep is not None and cell.sweep not in sweeps:
            warnings.append(f"{table.source} [paper] cell '{cell.id}': sweep '{cell.sweep}' is not a grid of "
                            f"this file{_closest(cell.sweep, sweeps)}; its row will read no runs")
            continue
        groups = [planned[cell.sweep]] if cell.sweep in planned else \
            (list(planned.values()) if cell.sweep is None else [])
        cfgs = [c for g in groups for c in g]
        if not cfgs:
            continue
        hits = [c for c in cfgs if cell.matches(c)]
        if not hits:
            raise PaperError(table.source, f"cell '{cell.id}'", f"where {dict(cell.where)} matches no point of "
                             f"sweep '{cell.sweep or 'any'}'")
        need = metric_requirement(cell.metric)
        if need and not any(need[1](c) for c in hits):
            raise PaperError(table.source, f"cell '{cell.id}'", f"metric '{cell.metric}' needs {need[0]}: "
                             f"no run it selects writes it")
    return warnings


# ------------------------------------------------------------------------------------------ ours


@dataclass
class Pooled:
    """Our number for one cell: mean ± std over seeds of the per-seed means over ``average-over``."""

    mean: float | None
    std: float | None
    seeds: int
    runs: int
    rounds: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)
    blocker: str | None = None  # why no number: no run, ambiguous selection


def pool(cell: Cell, members: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]]) -> Pooled:
    """Pool the (config, summary) pairs a cell selected: mean over ``average-over`` per seed, then over seeds."""
    import numpy as np

    if not members:
        return Pooled(None, None, 0, 0, blocker=f"n=0 runs ({cell.describe()})")
    fixed = set(NOT_A_SETTING) | set(cell.average_over) | {k for k, _ in cell.where}
    keys = sorted({k for cfg, _ in members for k in cfg if k not in fixed})
    # a key a run's config lacks (it predates the key) held the key's default
    differ = [k for k in keys if len({json.dumps(stored_value(cfg, k), sort_keys=True, default=str)
                                      for cfg, _ in members}) > 1]
    rounds = tuple(sorted({_rounds(cfg, s) for cfg, s in members}))
    if differ:
        return Pooled(None, None, 0, len(members), rounds, blocker=f"the {len(members)} runs differ in "
                      f"{', '.join(differ)}: add it to where or average-over")
    values = [(cfg, v) for cfg, s in members if (v := read_metric(s, cell.metric)) is not None]
    notes = []
    diverged = sorted(int(s.get("rounds", 0)) for _, s in members if _diverged(s))
    if diverged:
        at = f"round {diverged[0]}" if len(set(diverged)) == 1 else f"rounds {diverged[0]}–{diverged[-1]}"
        notes.append(f"{len(diverged)} of {len(members)} runs diverged (non-finite model at {at}); they count "
                     f"with the last evaluated model's {cell.metric}")
    if len(values) < len(members):
        notes.append(f"{len(members) - len(values)} of {len(members)} runs have no {cell.metric}")
    if not values:
        return Pooled(None, None, 0, len(members), rounds, notes, f"n=0 runs with {cell.metric}")
    by_seed: dict[Any, dict[str, float]] = {}
    for cfg, v in values:
        combo = json.dumps([cfg.get(k) for k in cell.average_over])
        by_seed.setdefault(cfg.get("seed", 0), {})[combo] = v
    combos = set().union(*(set(c) for c in by_seed.values()))
    for seed, got in sorted(by_seed.items(), key=lambda kv: str(kv[0])):
        if len(got) < len(combos):
            notes.append(f"seed {seed} has {len(got)} of {len(combos)} {'/'.join(cell.average_over)} values")
    per_seed = [float(np.mean(list(got.values()))) for _, got in sorted(by_seed.items(), key=lambda kv: str(kv[0]))]
    std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
    return Pooled(float(np.mean(per_seed)), std, len(per_seed), len(values), rounds, notes)


# Run outcomes a cell reads. A run whose model became non-finite is the attack's result (the model is lost),
# not a missing number; a run that raised, or never changed the model, is.
COUNTED = ("complete", "non_finite")


def _diverged(summary: Mapping[str, Any]) -> bool:
    return summary.get("status") == "non_finite"


def _rounds(cfg: Mapping[str, Any], summary: Mapping[str, Any]) -> int:
    """A run's rounds; a diverged run counts at its configured rounds (it stopped because the model was lost)."""
    planned = int(cfg.get("num-rounds", 0))
    return planned if _diverged(summary) else int(summary.get("rounds", planned))


def select(cell: Cell, runs: Sequence[Mapping[str, Any]], membership: Mapping[str, set[str]] | None
           ) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(config, summary) of the finished runs a cell reads (complete or diverged): its sweep's (by the
    manifest), filtered by where."""
    out = []
    for r in runs:
        if cell.sweep is not None and (membership is None or cell.sweep not in membership.get(r["id"], ())):
            continue
        if r["summary"].get("status", "complete") not in COUNTED or not cell.matches(r["config"]):
            continue
        out.append((r["config"], r["summary"]))
    return out


# ------------------------------------------------------------------------------------------ verdicts


@dataclass(frozen=True)
class ClaimCheck:
    claim: Claim
    paper: tuple[float | None, float | None]
    ours: tuple[float | None, float | None]
    holds: bool | None  # None: a side has no number of ours
    spread: float | None = None  # sqrt(std_left^2 + std_right^2) over seeds; a number side has none

    @property
    def within_spread(self) -> bool:
        """The two sides differ by no more than their seeds' spread: the ordering is not resolved by the runs."""
        return (self.holds is not None and self.spread is not None and self.spread > 0
                and abs(self.ours[0] - self.ours[1]) <= self.spread)

    def text(self) -> str:
        def f(v):
            return "—" if v is None else f"{v:.3f}"
        return f"{self.claim.text()} (ours {f(self.ours[0])} {self.claim.op} {f(self.ours[1])})"


def check_claim(claim: Claim, paper: Mapping[str, float | None], ours: Mapping[str, float | None],
                stds: Mapping[str, float | None] | None = None) -> ClaimCheck:
    """One ordering claim on the paper's numbers and on ours (cell id -> mean; a number stands for itself).

    ``stds`` (cell id -> std over seeds) gives the claim's spread, so a report can say when an ordering
    that holds (or fails) is smaller than the seeds' own variation.
    """
    def side(x, values):
        return x if isinstance(x, float) else values.get(x)
    o = (ours.get(claim.left), side(claim.right, ours))
    holds = None if None in o else bool(OPS[claim.op](o[0], o[1]))
    spread = None
    if stds is not None:
        parts = [stds.get(claim.left), 0.0 if isinstance(claim.right, float) else stds.get(claim.right)]
        spread = None if None in parts else math.hypot(*parts)
    return ClaimCheck(claim, (paper.get(claim.left), side(claim.right, paper)), o, holds, spread)


def rounds_note(cell_rounds: int | None, ours: Sequence[int]) -> str | None:
    """Say so when our runs' rounds differ from the cell's stated setting."""
    if cell_rounds is None or not ours or set(ours) == {cell_rounds}:
        return None
    have = f"{ours[0]}" if len(ours) == 1 else f"{ours[0]}–{ours[-1]}"
    verb = "cut to" if max(ours) < cell_rounds else "with"
    return f"runs {verb} {have} of the paper's {cell_rounds} rounds"


def verdict(cell: Cell, ours: Pooled, claims: Sequence[ClaimCheck] = ()) -> tuple[str, str]:
    """(verdict, reason) of one cell; the reason always names a rounds difference and pooling gaps.

    Same direction needs at least one claim on the cell that holds on ours and none that fails; a claim
    whose other side has no number of ours is listed as unchecked and decides nothing.
    """
    extra = [n for n in (rounds_note(cell.rounds, ours.rounds), *ours.notes) if n]
    if ours.blocker is not None:
        return NOT_MEASURED, "; ".join([ours.blocker, *extra])
    if cell.paper is None:
        return REFERENCE, "; ".join(["no paper value", *extra])
    diff = ours.mean - cell.paper
    if abs(diff) <= cell.tolerance + 1e-9:  # 0.55 - 0.5 is 0.05000000000000004 in floats
        return REPRODUCED, "; ".join([f"within tolerance: off by {diff:+.3f}, allowed ±{cell.tolerance:g}", *extra])
    mine = [c for c in claims if cell.id in (c.claim.left, c.claim.right)]
    held, failed = [c for c in mine if c.holds], [c for c in mine if c.holds is False]
    unchecked = [c for c in mine if c.holds is None]
    parts = [f"off by {diff:+.3f}, allowed ±{cell.tolerance:g}"]
    for word, group in (("fails", failed), ("holds", held), ("unchecked", unchecked)):
        if group:
            parts.append(f"{word}: " + ", ".join(c.text() for c in group))
    if not mine:
        parts.append("no ordering claim")
    return (SAME_DIRECTION if held and not failed else CONTRADICTED), "; ".join(parts + extra)


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    ours: Pooled
    verdict: str
    reason: str

    @property
    def difference(self) -> float | None:
        return None if self.ours.mean is None or self.cell.paper is None else self.ours.mean - self.cell.paper


def compare(table: PaperTable, runs: Sequence[Mapping[str, Any]], membership: Mapping[str, set[str]] | None
            ) -> tuple[list[CellResult], list[ClaimCheck]]:
    """Every cell's pooled number and verdict, and every claim checked on ours.

    ``runs``: dicts with ``id`` (run directory name), ``config`` and ``summary``; ``membership``: run id ->
    the sweeps that planned it (from manifest.json; None when there is no manifest).
    """
    pooled = {c.id: pool(c, select(c, runs, membership)) for c in table.cells}
    paper = {c.id: c.paper for c in table.cells}
    means = {cid: p.mean for cid, p in pooled.items()}
    stds = {cid: p.std for cid, p in pooled.items()}
    checks = [check_claim(cl, paper, means, stds) for cl in table.claims]
    results = [CellResult(c, pooled[c.id], *verdict(c, pooled[c.id], checks)) for c in table.cells]
    return results, checks
