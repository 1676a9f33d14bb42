"""Whether a run directory's files are a finished, readable result.

A sweep counts a run as done, and a report reads it, only when its files say so: ``summary.json``
is a JSON object with a ``config`` (or a ``config.json``) and numeric metric sections, and
``rounds.csv`` is a table of numbers with a ``round`` column. A file cut short or overwritten by hand is caught here once, with the file and the
reason, instead of as a traceback halfway through a report.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: summary.json sections that hold metric values (numbers or null), where a run wrote them.
METRIC_SECTIONS = ("last10", "mean_over_rounds", "max_over_rounds")
#: Top-level summary fields that are numbers or null when present.
NUMERIC_FIELDS = ("accuracy", "loss", "source_accuracy", "attack_success_rate", "source_accuracy_cv",
                  "wall_seconds", "ata", "mta", "ATA", "MTA")
#: The core's sections that are a JSON object (or null) when present; plug-ins declare theirs (``outputs.sections``).
OBJECT_FIELDS = ("detection", "paper_metrics")


class BadRunFiles(ValueError):
    """A run directory whose files are not a finished result: which file, and why."""

    def __init__(self, run_dir: Path, file: str, why: str) -> None:
        self.run_dir, self.file, self.why = Path(run_dir), file, why
        super().__init__(f"{self.run_dir / file}: {why}")


@dataclass
class FinishedRun:
    dir: Path
    config: dict[str, Any]
    summary: dict[str, Any]


def _is_number(v: Any) -> bool:
    """A number or null (NaN included: the report reads it as missing)."""
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _read_json(run_dir: Path, name: str) -> Any:
    try:
        return json.loads((run_dir / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadRunFiles(run_dir, name, "missing") from None
    except UnicodeDecodeError as exc:
        raise BadRunFiles(run_dir, name, f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BadRunFiles(run_dir, name, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}; "
                                         f"cut short or edited?)") from None
    except OSError as exc:
        raise BadRunFiles(run_dir, name, f"unreadable ({exc.strerror})") from None


def _type_name(v: Any) -> str:
    return {list: "a list", str: "a string", dict: "an object", type(None): "null"}.get(type(v), type(v).__name__)


def check_summary(run_dir: Path, summary: Any) -> dict[str, Any]:
    """The run's config (from summary.json, else config.json); raise BadRunFiles naming the bad field."""
    if not isinstance(summary, dict):
        raise BadRunFiles(run_dir, "summary.json", f"a JSON object expected, got {_type_name(summary)}")
    if not isinstance(summary.get("last10"), dict):
        raise BadRunFiles(run_dir, "summary.json", f"field 'last10' must be an object, got "
                                                   f"{_type_name(summary.get('last10'))}")
    for section in METRIC_SECTIONS:
        values = summary.get(section)
        if values is not None and not isinstance(values, dict):
            raise BadRunFiles(run_dir, "summary.json", f"field '{section}' must be an object")
        for k, v in (values or {}).items():
            if not _is_number(v):
                raise BadRunFiles(run_dir, "summary.json", f"'{section}.{k}' must be a number or null, got {v!r}")
    for k in NUMERIC_FIELDS:
        if not _is_number(summary.get(k)):
            raise BadRunFiles(run_dir, "summary.json", f"field '{k}' must be a number or null, got {summary[k]!r}")
    from fl_poison.measurement import section_names

    for k in OBJECT_FIELDS + section_names():
        if summary.get(k) is not None and not isinstance(summary[k], dict):
            raise BadRunFiles(run_dir, "summary.json", f"field '{k}' must be an object or null")
    if "config" in summary:
        config, where = summary["config"], "summary.json"
    else:
        config, where = _read_json(run_dir, "config.json"), "config.json"
    if not isinstance(config, dict) or not config:
        raise BadRunFiles(run_dir, where, f"the run's config must be a non-empty object, got {_type_name(config)}")
    seed = config.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise BadRunFiles(run_dir, where, f"config 'seed' must be an integer, got {seed!r}")
    return config


def check_rounds(run_dir: Path) -> None:
    """rounds.csv is a table of numbers with a ``round`` in every row.

    Its length is not compared with the summary's ``rounds``: hand-made folders (and tests)
    keep a few rows, and the recorder replaces the file atomically, so it is never cut short.
    """
    path = run_dir / "rounds.csv"
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            table = list(csv.reader(fh))
    except FileNotFoundError:
        raise BadRunFiles(run_dir, "rounds.csv", "missing") from None
    except UnicodeDecodeError as exc:
        raise BadRunFiles(run_dir, "rounds.csv", f"not UTF-8 text (byte {exc.start})") from None
    except (csv.Error, OSError) as exc:
        raise BadRunFiles(run_dir, "rounds.csv", f"not a readable CSV table ({exc})") from None
    if not table or "round" not in table[0]:
        raise BadRunFiles(run_dir, "rounds.csv", "no header row with a 'round' column")
    header, rows = table[0], table[1:]
    col = header.index("round")
    for i, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise BadRunFiles(run_dir, "rounds.csv", f"line {i} has {len(row)} cells, the header {len(header)}")
        for name, cell in zip(header, row):
            try:
                if cell != "":
                    float(cell)
            except ValueError:
                raise BadRunFiles(run_dir, "rounds.csv", f"line {i}, column '{name}': {cell!r} is not a number") from None
        if row[col] == "":
            raise BadRunFiles(run_dir, "rounds.csv", f"line {i} has no round number")


def load_finished(run_dir: str | Path) -> FinishedRun:
    """The run's config and summary after checking every file a report reads; raise BadRunFiles otherwise."""
    run_dir = Path(run_dir)
    summary = _read_json(run_dir, "summary.json")
    config = check_summary(run_dir, summary)
    check_rounds(run_dir)
    return FinishedRun(run_dir, config, summary)
