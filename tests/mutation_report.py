"""Mutation scores per module from a finished (or running) ``mutmut run``, and the survivors' diffs.

Not a test: a release tool (docs/testing.md). mutmut 3 keeps one ``mutants/<path>.py.meta`` per source
file with an exit code per mutant; this prints them as the table the notes quote:

    python tests/mutation_report.py                  # per file and per group of the issue, markdown
    python tests/mutation_report.py --survivors clients/gan    # '-' original / '+' mutant of each survivor

Score = (killed + timeout) / checked, where "checked" counts every mutant mutmut has decided, survivors
and mutants that no fast test reaches ("no tests") included. Timeouts count as killed (a mutant that makes
the tests hang is noticed).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"

#: mutmut 3's exit codes, folded into the four outcomes that matter for a score.
OUTCOME = {1: "killed", 3: "killed", 37: "killed", 0: "survived", 5: "no tests", 33: "no tests",
           36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", None: "unchecked"}
#: The groups issue 14 asks a score for, in its order.
GROUPS = ("strategies/", "clients/", "fl_poison/metrics/", "fl_poison/threat", "fl_poison/sampling",
          "fl_poison/federation")


def outcomes(mutants: Path = MUTANTS) -> dict[str, Counter]:
    """``{module path without .py: Counter(outcome)}`` for every meta file with mutants."""
    out: dict[str, Counter] = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        if codes:
            out[str(meta.relative_to(mutants))[: -len(".py.meta")]] = Counter(
                OUTCOME.get(c, "other") for c in codes.values())
    return out


def score(c: Counter) -> float:
    checked = sum(c.values()) - c["unchecked"]
    return 100.0 * (c["killed"] + c["timeout"]) / checked if checked else float("nan")


def _row(name: str, c: Counter) -> str:
    return (f"| {name} | {sum(c.values())} | {c['killed']} | {c['timeout']} | {c['survived']} | {c['no tests']} "
            f"| {c['unchecked']} | {score(c):.1f} % |")


def table(per_module: dict[str, Counter]) -> str:
    head = ["| module | mutants | killed | timeout | survived | no tests | unchecked | score |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [_row(m, c) for m, c in per_module.items()]
    groups = []
    for g in GROUPS:
        total = sum((c for m, c in per_module.items() if m.startswith(g)), Counter())
        if total:
            groups.append(_row(f"**{g.rstrip('/')}**", total))
    everything = sum(per_module.values(), Counter())
    return "\n".join(head + rows + ["|  |  |  |  |  |  |  |  |"] + groups + [_row("**all**", everything)])


def survivor_diffs(module: str, mutants: Path = MUTANTS) -> str:
    """The changed lines of every survived / no-test mutant of ``module`` (e.g. ``clients/gan``)."""
    src = (mutants / f"{module}.py").read_text()
    codes = json.loads((mutants / f"{module}.py.meta").read_text())["exit_code_by_key"]
    funcs = {n.name: ast.get_source_segment(src, n) for n in ast.walk(ast.parse(src))
             if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    lines = []
    for key in sorted(codes, key=lambda k: (k.rsplit("__mutmut_", 1)[0], int(k.rsplit("__mutmut_", 1)[1]))):
        if OUTCOME.get(codes[key]) not in ("survived", "no tests"):
            continue
        name = key.rsplit(".", 1)[-1]
        base = name.rsplit("__mutmut_", 1)[0]
        orig, mutant = funcs.get(base + "__mutmut_orig"), funcs.get(name)
        lines.append(f"## {key} [{OUTCOME[codes[key]]}]")
        if orig and mutant:
            diff = difflib.unified_diff(orig.splitlines(), mutant.replace(name, base + "__mutmut_orig").splitlines(),
                                        lineterm="", n=0)
            lines += [d for d in diff if not d.startswith(("---", "+++", "@@"))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--survivors", metavar="MODULE", help="print the survivors' diffs of MODULE (e.g. clients/gan)")
    p.add_argument("--mutants", type=Path, default=MUTANTS, help="mutmut's mutants/ folder")
    a = p.parse_args(argv)
    if not a.mutants.is_dir():
        p.error(f"{a.mutants} does not exist: run `mutmut run` first (docs/testing.md)")
    print(survivor_diffs(a.survivors, a.mutants) if a.survivors else table(outcomes(a.mutants)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
