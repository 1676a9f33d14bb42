"""``paper_comparison.md`` and ``paper_comparison.png``: a sweep folder's runs beside its paper's cells.

The sweep folder's ``manifest.json`` names the experiment file and which sweep planned each run;
the file's ``[paper]`` cells (:mod:`fl_poison.paper_comparison`) say what to compare. Everything is
validated before the report writes a file, so a bad table never leaves half a report.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from fl_poison.paper_comparison import (CONTRADICTED, REPRODUCED, SAME_DIRECTION, CellResult, ClaimCheck, PaperTable,
                                        check_planned, compare, parse_paper)

MANIFEST = "manifest.json"
COLOURS = {REPRODUCED: "tab:green", SAME_DIRECTION: "tab:orange", CONTRADICTED: "tab:red"}


def check_sweep(exp, runs) -> list[str]:
    """At ``fl-poison sweep`` planning time: parse the file's [paper] and check its cells against the plan.

    ``exp`` is a :class:`fl_poison.experiment_file.ExperimentFile`, ``runs`` the planned :class:`fl_poison.sweep.Run` list.
    Raises PaperError (exit 2) before anything runs; returns warning lines.
    """
    table = parse_paper(exp.paper, str(exp.path))
    planned: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        for name, _ in r.points:
            planned.setdefault(name, []).append(r.cfg.to_dict())
    return check_planned(table, exp.sweeps, planned)


def experiment_path(manifest: Mapping[str, Any], folder: str | Path = ".") -> Path | None:
    """The experiment file a manifest names: its absolute path, else its path from the store ``folder``
    (a store moved or cloned with its repository), else from the current folder."""
    candidates = []
    rel = manifest.get("experiment_from_store")
    name = manifest.get("experiment")
    if isinstance(name, str) and name:
        candidates.append(Path(name).expanduser())
    if isinstance(rel, str) and rel:
        candidates.append(Path(folder) / rel)
    return next((p for p in candidates if p.is_file()), None)


def _note(text: str) -> None:
    print(f"fl-poison: note: {text}", file=sys.stderr)


@dataclass
class PaperComparison:
    table: PaperTable
    results: list[CellResult]
    claims: list[ClaimCheck]

    def write(self, out: Path, figures: bool = True) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        files = [write_markdown(self, out / "paper_comparison.md")]
        if figures:
            files.append(write_figure(self, out / "paper_comparison.png"))
        return files


def paper_comparison_for(folder: str | Path, runs: Sequence[Mapping[str, Any]]) -> PaperComparison | None:
    """The comparison of a sweep folder, or None when its experiment file has no cells (or is unknown).

    ``runs``: :func:`fl_poison.report.load_runs` dicts. Raises PaperError / ConfigError on a bad table.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        _note(f"no paper comparison: {path} is not readable JSON ({exc})")
        return None
    if not isinstance(manifest, dict):
        return None
    exp_file = experiment_path(manifest, folder)
    if exp_file is None:
        _note(f"no paper comparison: the experiment file {manifest.get('experiment')!r} named in {path} "
              f"is not found from {Path.cwd()}")
        return None
    from fl_poison.experiment_file import load_experiment

    table = parse_paper(load_experiment(exp_file).paper, str(manifest.get("experiment")))
    if not table.cells:
        return None
    membership: dict[str, set[str]] = {}
    for p in manifest.get("points", []):
        if isinstance(p, dict) and isinstance(p.get("run"), str):
            membership.setdefault(p["run"], set()).add(str(p.get("sweep")))
    mine = [{"id": Path(r["dir"]).name, "config": r["config"], "summary": r["summary"]} for r in runs]
    results, claims = compare(table, mine, membership)
    return PaperComparison(table, results, claims)


def _f(v: float | None, signed: bool = False) -> str:
    return "—" if v is None else (f"{v:+.3f}" if signed else f"{v:.3f}")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a pipe would split the markdown table cell


def _ours(r: CellResult) -> str:
    p = r.ours
    if p.mean is None:
        return f"— (n=0, {p.runs} runs)" if p.runs else "— (n=0)"
    return f"{p.mean:.3f} ± {p.std:.3f} (n={p.seeds}, {p.runs} runs)"


def _paper(r: CellResult) -> str:
    c = r.cell
    return "—" if c.paper is None else f"{c.paper:.3f} ± {c.tolerance:g}"


def write_markdown(cmp: PaperComparison, path: Path) -> Path:
    counts = {v: sum(r.verdict == v for r in cmp.results) for v in dict.fromkeys(r.verdict for r in cmp.results)}
    lines = [f"# Paper vs ours: {cmp.table.source}", "",
             "Ours: the finished runs of each cell's sweep that match its filters; the mean over `average-over` "
             "within each seed, then mean ± sample std over seeds (n = seeds). Paper: value ± tolerance. "
             "Verdicts: reproduced (|ours − paper| ≤ tolerance), same direction (every ordering claim on the "
             "cell holds on ours), contradicted; reference (no paper value), not measured (no number of ours).",
             "", "Verdicts: " + ", ".join(f"{n} {v}" for v, n in counts.items()), "",
             "| cell | metric | paper | ours (mean ± std, n) | difference | verdict | reason |",
             "|---|---|---|---|---|---|---|"]
    for r in cmp.results:
        lines.append(f"| {r.cell.label} (`{r.cell.id}`) | {r.cell.metric} | {_paper(r)} | {_ours(r)} | "
                     f"{_f(r.difference, signed=True)} | {r.verdict} | {_cell(r.reason)} |")
    if cmp.claims:
        lines += ["", "## Ordering claims", "",
                  "A claim whose two sides differ by no more than their seeds' spread (√(std² + std²) over "
                  "seeds) is marked so: those runs do not resolve the ordering either way.", "",
                  "| claim | paper | ours | holds on ours |", "|---|---|---|---|"]
        for c in cmp.claims:
            holds = "unknown (a side has no runs)" if c.holds is None else ("yes" if c.holds else "no")
            if c.within_spread:
                holds += f" (within the seeds' spread ±{c.spread:.3f})"
            lines.append(f"| {c.claim.text()} | {_f(c.paper[0])} {c.claim.op} {_f(c.paper[1])} | "
                         f"{_f(c.ours[0])} {c.claim.op} {_f(c.ours[1])} | {holds} |")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_figure(cmp: PaperComparison, path: Path) -> Path:
    """Per cell: the paper's value with its tolerance band, ours with the std over seeds, coloured by verdict."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(cmp.results)
    fig, ax = plt.subplots(figsize=(max(7.0, 0.55 * n + 2), 4.8))
    for i, r in enumerate(cmp.results):
        if r.cell.paper is not None:
            ax.errorbar(i - 0.12, r.cell.paper, yerr=r.cell.tolerance, fmt="D", color="black", capsize=4,
                        ms=5, label="paper ± tolerance" if i == next(j for j, x in enumerate(cmp.results)
                                                                   if x.cell.paper is not None) else None)
        if r.ours.mean is not None:
            ax.errorbar(i + 0.12, r.ours.mean, yerr=r.ours.std, fmt="o", capsize=4, ms=6,
                        color=COLOURS.get(r.verdict, "tab:gray"))
    for verdict, colour in {**COLOURS, "reference / not measured": "tab:gray"}.items():
        ax.plot([], [], "o", color=colour, label=f"ours: {verdict}")
    ax.set_xticks(range(n), [r.cell.id for r in cmp.results], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("metric value (each cell's metric)")
    ax.set_title(f"paper vs ours ({cmp.table.source}); ours: mean ± std over seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
