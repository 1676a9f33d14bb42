"""Experiment files: a base ``[config]``, named grids ``[sweep.NAME]`` and the paper's ``[paper]`` notes.

A grid maps run keys to lists of values and expands to their Cartesian
product. Keys joined by commas vary together (a zipped axis), for settings
that only make sense as pairs, e.g. ``"source-class,target-class" = [[6, 0], [4, 6]]``.
Replicates: ``seeds = [0, 1, 2]`` or ``repeats = 3`` (seeds ``seed``, ``seed+1``, ... of the
base config) add a ``seed`` axis that varies fastest, so the runs of one setting sit together.
A grid must vary something: a sweep refuses an empty table (``repeats = 1`` is the way to
run the base config alone, once).
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fl_poison.config import ConfigError, KEYS


#: Sections an experiment file may have; code that adds one extends this tuple (anything else is an error).
SECTIONS: tuple[str, ...] = ("config", "sweep", "paper")


@dataclass
class ExperimentFile:
    """One parsed experiment file (not the ServerApp's run, :class:`fl_poison.app.experiment.Experiment`)."""

    path: Path
    config: dict[str, Any]
    sweeps: dict[str, dict[str, list]] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)


def load_experiment(path: str | Path) -> ExperimentFile:
    p = Path(path)
    if not p.is_file():
        raise ConfigError("--config", str(p), "an existing TOML file")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError("--config", str(p), f"a UTF-8 text file (byte {exc.start}: {exc.reason})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", str(p), f"valid TOML ({exc})") from None
    unknown = [k for k, v in data.items() if isinstance(v, dict) and k not in SECTIONS]
    if unknown:
        raise ConfigError(f"[{unknown[0]}]", str(p), f"a known section: {', '.join(f'[{s}]' for s in SECTIONS)} "
                          f"(unknown sections would be silently ignored)")
    loose = [k for k, v in data.items() if not isinstance(v, dict)]
    if loose and "config" in data:
        raise ConfigError(loose[0], str(p), "a key inside [config] (top-level keys beside [config] are ignored)")
    config = data.get("config", {k: data[k] for k in loose})
    sweeps = data.get("sweep", {})
    for name, grid in sweeps.items():
        if not isinstance(grid, dict):
            raise ConfigError(f"sweep.{name}", grid, "a grid table [sweep.NAME] (keys directly under [sweep] "
                              "are not a grid: put them under a [sweep.NAME] header)")
        for axis in grid:
            if axis in REPLICATE_AXES:
                continue
            for key in axis.split(","):
                if key.strip() not in KEYS:
                    raise ConfigError(f"sweep.{name}", key, "a run key (see `fl-poison keys`)")
    return ExperimentFile(p, dict(config), {k: dict(v) for k, v in sweeps.items()}, dict(data.get("paper", {})))


#: Grid entries that are not run keys but say how often each setting runs (see module docstring).
REPLICATE_AXES = ("seeds", "repeats")


def replicate_seeds(grid: dict[str, Any], base_seed: int = 0) -> list[int] | None:
    """The seeds a ``seeds`` / ``repeats`` entry asks for, or None when the grid has neither."""
    if "seeds" in grid and "repeats" in grid:
        raise ConfigError("repeats", grid["repeats"], "either seeds = [...] or repeats = N, not both")
    if ("seeds" in grid or "repeats" in grid) and "seed" in grid:
        raise ConfigError("seeds", grid.get("seeds", grid.get("repeats")), "not together with a seed axis")
    if "seeds" in grid:
        seeds = grid["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) and not isinstance(x, bool)
                                                              and x >= 0 for x in seeds) or len(set(seeds)) < len(seeds):
            raise ConfigError("seeds", seeds, "a non-empty list of distinct integers >= 0")
        return list(seeds)
    if "repeats" in grid:
        n = grid["repeats"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError("repeats", n, "an integer >= 1")
        return [base_seed + i for i in range(n)]
    return None


def expand(grid: dict[str, Any], base_seed: int = 0) -> list[dict[str, Any]]:
    """All points of a grid, in a stable order (first axis varies slowest, replicate seeds fastest)."""
    seeds = replicate_seeds(grid, base_seed)
    grid = {k: v for k, v in grid.items() if k not in REPLICATE_AXES}
    if seeds is not None:
        grid["seed"] = seeds
    axes: list[list[dict[str, Any]]] = []
    for axis, values in grid.items():
        keys = [k.strip() for k in axis.split(",")]
        if not isinstance(values, list) or not values:
            raise ConfigError(axis, values, "a non-empty list of values")
        points = []
        for v in values:
            vs = v if len(keys) > 1 else [v]
            if len(keys) > 1 and (not isinstance(v, list) or len(v) != len(keys)):
                raise ConfigError(axis, v, f"a list of {len(keys)} values ({', '.join(keys)})")
            points.append(dict(zip(keys, vs)))
        axes.append(points)
    points = []
    for combo in itertools.product(*axes):
        merged: dict[str, Any] = {}
        for part in combo:
            merged.update(part)
        points.append(merged)
    return points
