"""What a plug-in adds to a run's measurements, declared by the plug-in so the core names none.

The experiment side scores every round's global model the same way for every
run. What only one attack (or defense) can measure -- the GAN attack's
generated images, the backdoor's triggered test set, ADA's chosen target --
lives with that plug-in: its class returns a :class:`Measurement` from
``measurement(config, fed)`` and declares in ``outputs`` (:class:`Outputs`) the
names it writes, so the recorder summarises them, run-file checks accept them
and paper cells may name them, for runs of any attack (absent values are null,
as before). The core reaches both only through the registry
(:func:`configured`, :func:`declared`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from fl_poison import plugins


@dataclass(frozen=True)
class Outputs:
    """The names a plug-in's measurement writes (kept stable: stores and reports read them back).

    ``series``: rounds.csv columns, summarised over rounds in summary.json (``last10``, means, max, min);
    ``final``: columns summary.json also gives top-level (the last round's value);
    ``sections``: summary.json objects and the numbers in each that a paper cell may name;
    ``class_metrics``: reply metrics that name a class (summarised per round by the most common value).
    """

    series: tuple[str, ...] = ()
    final: tuple[str, ...] = ()
    sections: tuple[tuple[str, tuple[str, ...]], ...] = ()
    class_metrics: tuple[str, ...] = ()


NO_OUTPUTS = Outputs()


class Measurement:
    """A plug-in's server-side measurements over one run; this base measures nothing.

    One object per run, made by the plug-in class's ``measurement(config, fed)``
    after the run plan is known. Each method returns what the run files gain,
    under the names the class's :class:`Outputs` declare.
    """

    def test_metrics(self, server_round: int, model: Any) -> dict[str, Any]:
        """Columns from the round's global model (every round, round 0 too), after the core's test metrics."""
        return {}

    def round_metrics(self, server_round: int, model: Any, replies: Sequence[Any]) -> dict[str, Any]:
        """Columns of a trained round from the new global model and the round's training replies."""
        return {}

    def report_entries(self, report: Any, malicious: set[int]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(rounds.csv columns, defense.jsonl entries) from the defense's ``RoundReport`` of the round."""
        return {}, {}

    def summary_entries(self) -> dict[str, Any]:
        """summary.json entries of the whole run."""
        return {}

    def figures(self, run_dir: Path) -> list[Path]:
        """Figures of the run (called only with ``figures = true``)."""
        return []


class Measurements(Measurement):
    """The configured attack's and defense's measurements as one (entries merged in that order)."""

    def __init__(self, parts: Iterable[Measurement]) -> None:
        self.parts = list(parts)

    def test_metrics(self, server_round: int, model: Any) -> dict[str, Any]:
        return _merged(p.test_metrics(server_round, model) for p in self.parts)

    def round_metrics(self, server_round: int, model: Any, replies: Sequence[Any]) -> dict[str, Any]:
        return _merged(p.round_metrics(server_round, model, replies) for p in self.parts)

    def report_entries(self, report: Any, malicious: set[int]) -> tuple[dict[str, Any], dict[str, Any]]:
        pairs = [p.report_entries(report, malicious) for p in self.parts]
        return _merged(c for c, _ in pairs), _merged(e for _, e in pairs)

    def summary_entries(self) -> dict[str, Any]:
        return _merged(p.summary_entries() for p in self.parts)

    def figures(self, run_dir: Path) -> list[Path]:
        return [f for p in self.parts for f in p.figures(run_dir)]


def _merged(dicts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in dicts:
        out.update(d)
    return out


def configured(config: Mapping[str, Any]) -> tuple[type, type]:
    """The configured attack's and defense's plug-in classes."""
    return plugins.get("attack", config["attack"]), plugins.get("defense", config["defense"])


def measurements_for(config: Mapping[str, Any], fed: Any) -> Measurements:
    """The run's plug-in measurements: each configured plug-in's ``measurement(config, fed)`` (None: nothing)."""
    made = (cls.measurement(config, fed) for cls in configured(config))
    return Measurements(m for m in made if m is not None)


def declared() -> list[tuple[str, str, Outputs]]:
    """``(kind, name, outputs)`` of every registered plug-in that declares outputs, attacks first, by name."""
    return [(kind, name, cls.outputs) for kind, name, cls in plugins.describe()
            if getattr(cls, "outputs", NO_OUTPUTS) != NO_OUTPUTS]


def _union(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def series_columns() -> tuple[str, ...]:
    """Every registered plug-in's summarised rounds.csv columns."""
    return _union(c for _, _, o in declared() for c in o.series)


def final_columns() -> tuple[str, ...]:
    """Every registered plug-in's top-level summary.json columns."""
    return _union(c for _, _, o in declared() for c in o.final)


def class_metrics() -> tuple[str, ...]:
    """Every registered plug-in's class-valued reply metrics."""
    return _union(c for _, _, o in declared() for c in o.class_metrics)


def section_names() -> tuple[str, ...]:
    """summary.json objects registered plug-ins write."""
    return _union(s for _, _, o in declared() for s, _ in o.sections)


def section_metrics() -> tuple[str, ...]:
    """``section.number`` paths of those objects that paper cells may name."""
    return _union(f"{s}.{k}" for _, _, o in declared() for s, keys in o.sections for k in keys)


def owners_of(metric: str) -> tuple[tuple[str, str], ...]:
    """``(kind, name)`` of every plug-in whose outputs hold ``metric`` (a column, or a section's path).

    Several when a plug-in inherits another's outputs (``model-replacement`` writes the backdoor's).
    """
    base = metric.rsplit(".", 1)[-1]
    return tuple((kind, name) for kind, name, o in declared()
                 if base in o.series or base in o.final or any(metric.startswith(f"{s}.") for s, _ in o.sections))


def owner_of(metric: str) -> tuple[str, str] | None:
    """The first of :func:`owners_of`, or None for a core metric."""
    owners = owners_of(metric)
    return owners[0] if owners else None
