"""Tables and figures of a whole (or partial) sweep: what the papers show, from run directories alone.

Reads every ``runs/*/summary.json`` under a sweep folder (or run directories directly
under it), so a sweep still running, a hand-made folder or several sweeps merged into one
folder all report the same way. Runs that differ only in ``seed`` are one row: mean ± std
(sample std, ddof = 1; 0 for a single seed) over the seeds, as the papers average repeats.

Every run's files are checked before anything is written (:mod:`fl_poison.run_files`): a run
whose files are unreadable is skipped and named (``strict`` refuses instead), and the report
is written into a temporary folder and moved into place, so a failure leaves no half report.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from fl_poison.config import ConfigError, stored_value
from fl_poison.run_files import BadRunFiles, load_finished

#: Keys that never make a row: the replicate axis and output locations.
NOT_GROUPED = ("seed", "run-name", "out-dir", "figures")
RATIO_KEY, LINE_KEY = "malicious-fraction", "defense"


def _get(*path: str) -> Callable[[dict], float | None]:
    def f(s: dict) -> float | None:
        for p in path:
            s = s.get(p) if isinstance(s, dict) else None
        return None if s is None or (isinstance(s, float) and math.isnan(s)) else float(s)
    return f


def _first(*getters: Callable[[dict], float | None]) -> Callable[[dict], float | None]:
    return lambda s: next((v for g in getters if (v := g(s)) is not None), None)


#: metric name -> (label, how to read it from summary.json). Accuracy-type metrics are last-10-round means,
#: the LFighter paper's reporting convention; ATA / MTA only where a run wrote them.
METRICS: dict[str, tuple[str, Callable[[dict], float | None]]] = {
    "accuracy": ("test accuracy (last 10)", _get("last10", "accuracy")),
    "loss": ("test loss (last 10)", _get("last10", "loss")),
    "source_accuracy": ("source-class accuracy (last 10)", _get("last10", "source_accuracy")),
    "asr": ("attack success rate (last 10)", _get("last10", "attack_success_rate")),
    "source_cv": ("CV of source accuracy", _get("source_accuracy_cv")),
    "ata": ("ATA", _first(_get("ata"), _get("ATA"), _get("paper_metrics", "ata"))),
    "mta": ("MTA", _first(_get("mta"), _get("MTA"), _get("paper_metrics", "mta"))),
    "precision": ("detection precision", _get("detection", "precision")),
    "recall": ("detection recall", _get("detection", "recall")),
    "f1": ("detection F1", _get("detection", "f1")),
    "wall_seconds": ("wall time (s)", _get("wall_seconds")),
}
FIGURE_METRICS = ("source_accuracy", "asr", "accuracy", "f1")


def find_runs(folder: str | Path) -> list[Path]:
    """Finished run directories of a sweep folder (``runs/*``) or of a folder of runs."""
    root = Path(folder)
    base = root / "runs" if (root / "runs").is_dir() else root
    return sorted(p.parent for p in base.glob("*/summary.json"))


def check_metrics(run: dict[str, Any]) -> None:
    """Every metric the tables read is a number or absent; raise BadRunFiles naming the first that is not."""
    for name, (_, read) in METRICS.items():
        try:
            read(run["summary"])
        except (TypeError, ValueError):
            raise BadRunFiles(run["dir"], "summary.json", f"metric '{name}' is not a number") from None


def load_runs(folder: str | Path, bad: list[BadRunFiles] | None = None) -> list[dict[str, Any]]:
    """Finished runs whose files are readable; an unreadable one raises BadRunFiles, or goes to ``bad``."""
    out = []
    for d in find_runs(folder):
        try:
            f = load_finished(d)
            run = {"dir": d, "config": f.config, "summary": f.summary}
            check_metrics(run)
        except BadRunFiles as exc:
            if bad is None:
                raise
            bad.append(exc)
            continue
        out.append(run)
    return out


def varied_keys(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Config keys that take more than one value across the runs (in config order), seed excluded."""
    keys = list(dict.fromkeys(k for r in runs for k in r["config"]))
    return [k for k in keys if k not in NOT_GROUPED
            and len({json.dumps(stored_value(r["config"], k)) for r in runs}) > 1]


def _sort_key(v: Any):
    return (0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0, str(v))


def aggregate(runs: Sequence[dict[str, Any]], by: Sequence[str] | None = None,
              metrics: Sequence[str] | None = None) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Rows of ``by`` values + ``n`` + per metric ``(mean, std)``; metrics no run has are dropped."""
    by = list(by) if by else varied_keys(runs)
    names = list(metrics) if metrics else list(METRICS)
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(tuple(json.dumps(stored_value(r["config"], k)) for k in by), []).append(r)
    rows = []
    for key in sorted(groups, key=lambda t: [_sort_key(json.loads(x)) for x in t]):
        # by seed, not by run directory: run ids hash the whole config, so they change when a new key
        # appears; the summation order (and so the last bits of a mean) must not
        members = sorted(groups[key], key=lambda m: (m["config"].get("seed", 0),
                                                     json.dumps(m["config"], sort_keys=True)))
        row: dict[str, Any] = {k: json.loads(v) for k, v in zip(by, key)}
        row["n"] = len(members)
        row["seeds"] = sorted({m["config"].get("seed") for m in members})
        for m in names:
            vals = [v for r in members if (v := METRICS[m][1](r["summary"])) is not None]
            row[m] = (float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0) if vals else None
        rows.append(row)
    names = [m for m in names if any(r[m] is not None for r in rows)]
    return by, names, rows


def _fmt(v, digits=3) -> str:
    if v is None:
        return "–"
    mean, std = v
    d = 1 if abs(mean) >= 100 else digits
    return f"{mean:.{d}f} ± {std:.{d}f}"


def write_tables(by, names, rows, out: Path, stem: str = "table") -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*by, "n", *[f"{m}_{s}" for m in names for s in ("mean", "std")]])
        for r in rows:
            w.writerow([r[k] for k in by] + [r["n"]]
                       + [x for m in names for x in (r[m] if r[m] is not None else ("", ""))])
    head = [*by, "n", *names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([str(r[k]) for k in by] + [str(r["n"])] + [_fmt(r[m]) for m in names]) + " |")
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def cv_table(by, rows, out: Path) -> Path | None:
    """LFighter Table 3: CV of source accuracy, defenses down, attacker ratios across."""
    if not rows or all(r.get("source_cv") is None for r in rows):
        return None
    ratios = sorted({r[RATIO_KEY] for r in rows}) if RATIO_KEY in by else [None]
    others = [k for k in by if k != RATIO_KEY]
    keyed = {}
    for r in rows:
        keyed[(tuple(r[k] for k in others), r.get(RATIO_KEY))] = r.get("source_cv")
    lines = ["| " + " | ".join(others + [f"{RATIO_KEY}={x:g}" if x is not None else "CV" for x in ratios]) + " |",
             "|" + "---|" * (len(others) + len(ratios))]
    for o in dict.fromkeys(k for k, _ in keyed):
        lines.append("| " + " | ".join([str(x) for x in o] + [_fmt(keyed.get((o, x))) for x in ratios]) + " |")
    path = out / "cv_source_accuracy.md"
    path.write_text("Coefficient of variation of source-class accuracy over rounds (LFighter Table 3; lower is "
                    "steadier), mean ± std over seeds\n\n" + "\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------------------ figures


def _panels(by, rows):
    """Rows split by every grouping key except ratio and defense (one subplot each)."""
    rest = [k for k in by if k not in (RATIO_KEY, LINE_KEY)]
    panels: dict[str, list] = {}
    for r in rows:
        panels.setdefault(", ".join(f"{k}={r[k]}" for k in rest) or "all runs", []).append(r)
    return panels


def _grid(n):
    import matplotlib.pyplot as plt

    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(max(7.0, 5.2 * cols), 4.3 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def ratio_figure(by, rows, metric: str, out: Path) -> Path | None:
    """LFighter Figs 7-12: a metric against the attacker ratio, one line per defense."""
    if RATIO_KEY not in by or all(r.get(metric) is None for r in rows):
        return None
    import matplotlib.pyplot as plt

    panels = _panels(by, rows)
    fig, axes = _grid(len(panels))
    for ax, (title, prs) in zip(axes, panels.items()):
        lines: dict[str, list] = {}
        for r in prs:
            lines.setdefault(str(r.get(LINE_KEY, "runs")), []).append(r)
        for name, pts in lines.items():
            pts = sorted((p for p in pts if p[metric] is not None), key=lambda p: p[RATIO_KEY])
            x = [100 * p[RATIO_KEY] for p in pts]
            ax.errorbar(x, [p[metric][0] for p in pts], yerr=[p[metric][1] for p in pts], marker="o",
                        capsize=3, label=name)
        ax.set_xlabel("attackers (% of peers)")
        ax.set_ylabel(METRICS[metric][0])
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title=LINE_KEY)
    fig.suptitle(f"{METRICS[metric][0]} vs attacker ratio\n(one line per defense; mean ± std over seeds)")
    fig.tight_layout()
    path = out / f"vs_ratio_{metric}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def heatmap_figure(by, rows, metric: str, out: Path) -> Path | None:
    """Defense x attacker ratio, colour = metric mean (number printed in each cell)."""
    if RATIO_KEY not in by or LINE_KEY not in by or all(r.get(metric) is None for r in rows):
        return None
    import matplotlib.pyplot as plt

    panels = _panels(by, rows)
    fig, axes = _grid(len(panels))
    for ax, (title, prs) in zip(axes, panels.items()):
        defs = list(dict.fromkeys(r[LINE_KEY] for r in prs))
        ratios = sorted({r[RATIO_KEY] for r in prs})
        z = np.full((len(defs), len(ratios)), np.nan)
        for r in prs:
            if r[metric] is not None:
                z[defs.index(r[LINE_KEY]), ratios.index(r[RATIO_KEY])] = r[metric][0]
        im = ax.imshow(z, aspect="auto", cmap="viridis")
        for (i, j), v in np.ndenumerate(z):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if v < np.nanmean(z) else "black")
        ax.set_xticks(range(len(ratios)), [f"{100 * x:g}%" for x in ratios])
        ax.set_yticks(range(len(defs)), defs)
        ax.set_xlabel("attackers (% of peers)")
        ax.set_ylabel(LINE_KEY)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, label=METRICS[metric][0])
    fig.suptitle(f"{METRICS[metric][0]}: defense × attacker ratio")
    fig.tight_layout()
    path = out / f"heatmap_{metric}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def choose_round_runs(runs, by) -> list[dict]:
    """Default runs for the per-round figure: lowest seed, highest attacker ratio, one per defense and panel."""
    rest = [k for k in by if k not in (RATIO_KEY, LINE_KEY)]
    top = max((r["config"].get(RATIO_KEY, 0) for r in runs), default=0)
    chosen: dict[tuple, dict] = {}
    for r in sorted(runs, key=lambda r: r["config"].get("seed", 0)):
        c = r["config"]
        if c.get(RATIO_KEY, 0) != top:
            continue
        chosen.setdefault(tuple(json.dumps(stored_value(c, k)) for k in [*rest, LINE_KEY]), r)
    return list(chosen.values())[:12]


def rounds_figure(runs: Sequence[dict], by, out: Path, column: str = "source_accuracy") -> Path | None:
    """Tolpegin Figs 3-6 / LFighter Fig 13: source-class accuracy per round, attack window shaded."""
    from fl_poison.results import read_rounds

    import matplotlib.pyplot as plt

    series = []
    for r in runs:
        rows = [x for x in read_rounds(r["dir"]) if x.get("round", 0) >= 1 and x.get(column) is not None]
        if rows:
            label = ", ".join(f"{k}={r['config'].get(k)}" for k in by) or r["dir"].name
            series.append((label, [x["round"] for x in rows], [x[column] for x in rows], r["config"]))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    windows = set()
    for label, x, y, c in series:
        ax.plot(x, y, label=f"{label} (seed {c.get('seed')})")
        if c.get("attack", "none") != "none" and c.get("malicious-fraction", 0) + max(c.get("num-malicious", -1), 0) > 0:
            end = c["attack-end-round"] if c.get("attack-end-round", -1) >= 0 else c["num-rounds"]
            windows.add((c.get("attack-start-round", 1), end))
    for i, (a, b) in enumerate(sorted(windows)):
        ax.axvspan(a - 0.5, b + 0.5, color="red", alpha=0.08, label="attack window" if i == 0 else None)
    ax.set_xlabel("round")
    ax.set_ylabel(column.replace("_", " "))
    ax.set_title(f"{column.replace('_', ' ')} per round (shaded: rounds the attackers poison)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = out / f"rounds_{column}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def check_out(out: Path) -> None:
    """Refuse an output path that is (or sits under) a file, before reading any run."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError("--out", str(p), "a folder for the report (this path is a file)")
            return


def check_by(runs: Sequence[dict[str, Any]], by: Sequence[str]) -> None:
    known = {k for r in runs for k in r["config"]}
    for k in by:
        if k not in known:
            varied = ", ".join(varied_keys(runs)) or "none"
            raise ConfigError("--by", k, f"a config key of these runs; the keys that vary here: {varied} "
                              f"(any other key of their config works too, see `fl-poison keys`)")


def pick_runs(runs: Sequence[dict[str, Any]], ids: Sequence[str], folder: str | Path) -> list[dict[str, Any]]:
    """The runs ``--runs`` names: a run id or a prefix of exactly one (the progress line shows 8 digits)."""
    chosen = []
    for rid in ids:
        hits = [r for r in runs if r["dir"].name == rid] or [r for r in runs if r["dir"].name.startswith(rid)]
        if len(hits) != 1:
            some = ", ".join(r["dir"].name for r in runs[:4]) + (", …" if len(runs) > 4 else "")
            what = f"a prefix of {len(hits)} runs; give more digits" if hits else f"no finished run under {folder}"
            raise ConfigError("--runs", rid, f"the id of one finished run ({what}; ids: {some})")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def bad_runs_text(bad: Sequence[BadRunFiles]) -> str:
    return "\n".join(f"  run {b.run_dir.name}: {b.file}: {b.why}" for b in bad)


def report_commands(folder: str | Path, out: Path) -> list[str]:
    """The sweep commands a folder's manifest recorded, then the report's own."""
    import shlex

    from fl_poison.sweep import read_manifest

    try:
        commands = [c for c in read_manifest(Path(folder)).get("commands", []) if isinstance(c, str)]
    except ConfigError:
        commands = []
    report = ["fl-poison", "report", str(folder)]
    if out != Path(folder) / "report":
        report += ["--out", str(out)]
    return commands + [shlex.join(report)]


def make_report(folder: str | Path, by: Sequence[str] | None = None, metrics: Sequence[str] | None = None,
                out: str | Path | None = None, round_runs: Sequence[str] | None = None,
                figures: bool = True, strict: bool = False) -> dict[str, Any]:
    """Write table.{csv,md}, cv_source_accuracy.md and the PNGs into ``out`` (default ``<folder>/report``).

    Options and runs are all checked before anything is written; ``skipped`` in the result
    lists the runs left out for unreadable files (``strict``: raise instead, writing nothing).
    """
    import matplotlib

    matplotlib.use("Agg")
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder} is not a folder (give a sweep folder or a folder of run directories)")
    out = Path(out) if out else Path(folder) / "report"
    check_out(out)
    bad: list[BadRunFiles] = []
    runs = load_runs(folder, bad)
    if bad and (strict or not runs):
        why = "--strict refuses runs with unreadable files" if runs else "every finished run has unreadable files"
        raise ValueError(f"{why}; nothing written ({len(bad)} run(s)):\n{bad_runs_text(bad)}")
    if not runs:
        raise FileNotFoundError(f"no finished runs (summary.json) under {folder}")
    if by:
        check_by(runs, by)
    chosen = pick_runs(runs, round_runs, folder) if round_runs else None
    from fl_poison.paper_report import paper_comparison_for  # [paper] cells: validated before any file is written

    paper = paper_comparison_for(folder, runs)
    by, names, rows = aggregate(runs, by, metrics)
    real = out.resolve()
    real.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.", dir=real.parent))
    try:
        written = _write_report(runs, by, names, rows, chosen, paper, tmp, figures)
        from fl_poison.report_page import write_page

        written.append(write_page(written, tmp, f"fl-poison report: {Path(folder).resolve().name}",
                                  report_commands(folder, out)))
        real.mkdir(exist_ok=True)
        files = []
        for f in written:
            os.replace(f, real / f.name)
            files.append(out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"runs": len(runs), "by": by, "metrics": names, "rows": rows, "files": files, "skipped": bad}


def plugin_report_files(runs: Sequence[dict[str, Any]], out: Path, figures: bool) -> list[Path]:
    """What each attack with runs in the report adds (its ``report_files``: e.g. the GAN's (G, T) matrix)."""
    from fl_poison import plugins

    attacks = plugins.plugins("attack")
    names = sorted({r["config"].get("attack") for r in runs} & set(attacks))
    return [f for name in names for f in attacks[name].report_files(runs, out, figures)]


def _write_report(runs, by, names, rows, chosen, paper, out: Path, figures: bool) -> list[Path]:
    files = list(write_tables(by, names, rows, out))
    if (cv := cv_table(by, rows, out)) is not None:
        files.append(cv)
    if figures:
        for m in [m for m in FIGURE_METRICS if m in names]:
            files += [p for p in (ratio_figure(by, rows, m, out), heatmap_figure(by, rows, m, out)) if p]
        chosen = chosen if chosen is not None else choose_round_runs(runs, by)
        if chosen and (p := rounds_figure(chosen, by, out)):
            files.append(p)
    files += plugin_report_files(runs, out, figures)
    if paper is not None:
        files += paper.write(out, figures)
    return files
