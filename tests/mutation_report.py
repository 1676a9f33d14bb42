"""Mutation scores per module from a finished (or running) ``mutmut run``, and the survivors' diffs.

Not a test: a release tool (docs/testing.md). mutmut 3 keeps one ``mutants/<path>.py.meta`` per source
file with an exit code per mutant; this prints them as a markdown table per file and per group:

    python tests/mutation_report.py                  # per file and per group of the release set, markdown
    python tests/mutation_report.py --survivors clients/gan    # '-' original / '+' mutant of each survivor
    python tests/mutation_report.py --verdicts docs/mutation-survivors.md  # also: score without equivalents

Score = (killed + timeout) / checked, where "checked" counts every mutant mutmut has decided, survivors
and mutants that no fast test reaches ("no tests") included. Timeouts count as killed (a mutant that makes
the tests hang is noticed). With ``--verdicts``, survivors that the survivors document calls
"equivalent" (no input can tell them from the original) get their own column and leave the denominator
of a second score: killed / (checked - equivalent), the usual definition of a mutation score.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"

#: mutmut 3's exit codes, folded into the four outcomes that matter for a score.
OUTCOME = {1: "killed", 3: "killed", 37: "killed", 0: "survived", 5: "no tests", 33: "no tests",
           36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", None: "unchecked"}
#: The groups of the release set a score is reported for, in this order.
GROUPS = ("strategies/", "clients/", "fl_poison/metrics/", "fl_poison/threat", "fl_poison/sampling",
          "fl_poison/federation")


def verdicts(doc: Path) -> dict[str, str]:
    """``{mutant name: verdict}`` from a survivors document: rows ``| `name` | outcome | change | verdict |``
    under ``### module/path`` headings (the format of ``docs/mutation-survivors.md``)."""
    out: dict[str, str] = {}
    module = None
    for line in doc.read_text().splitlines():
        if line.startswith("### "):
            module = line[4:].split()[0].replace("/", ".")
            continue
        name = re.match(r"\| `([^`]+)` \|", line)
        if module and name:
            cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))  # cells may hold escaped pipes (\|)
            out[f"{module}.{name.group(1)}"] = cells[-1].strip()
    return out


def outcomes(mutants: Path = MUTANTS, equivalent: frozenset[str] = frozenset()) -> dict[str, Counter]:
    """``{module path without .py: Counter(outcome)}`` for every meta file with mutants; survivors named in
    ``equivalent`` count as "equivalent"."""
    out: dict[str, Counter] = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        if codes:
            out[str(meta.relative_to(mutants))[: -len(".py.meta")]] = Counter(
                "equivalent" if OUTCOME.get(c) == "survived" and k in equivalent else OUTCOME.get(c, "other")
                for k, c in codes.items())
    return out


def score(c: Counter, without_equivalent: bool = False) -> float:
    checked = sum(c.values()) - c["unchecked"] - (c["equivalent"] if without_equivalent else 0)
    return 100.0 * (c["killed"] + c["timeout"]) / checked if checked else float("nan")


def _row(name: str, c: Counter, equivalents: bool) -> str:
    survived = c["survived"] + (0 if equivalents else c["equivalent"])
    cells = [name, sum(c.values()), c["killed"], c["timeout"], survived] + ([c["equivalent"]] if equivalents else [])
    cells += [c["no tests"], c["unchecked"], f"{score(c):.1f} %"]
    cells += [f"{score(c, without_equivalent=True):.1f} %"] if equivalents else []
    return "| " + " | ".join(str(x) for x in cells) + " |"


def table(per_module: dict[str, Counter]) -> str:
    """Markdown table per module and per group; with an "equivalent" outcome present, two more columns."""
    equivalents = any(c["equivalent"] for c in per_module.values())
    cols = ["module", "mutants", "killed", "timeout", "survived"] + (["equivalent"] if equivalents else [])
    cols += ["no tests", "unchecked", "score"] + (["score without equivalents"] if equivalents else [])
    head = ["| " + " | ".join(cols) + " |", "|---" + "|---:" * (len(cols) - 1) + "|"]
    rows = [_row(m, c, equivalents) for m, c in per_module.items()]
    groups = []
    for g in GROUPS:
        total = sum((c for m, c in per_module.items() if m.startswith(g)), Counter())
        if total:
            groups.append(_row(f"**{g.rstrip('/')}**", total, equivalents))
    everything = sum(per_module.values(), Counter())
    blank = "|" + "  |" * len(cols)
    return "\n".join(head + rows + [blank] + groups + [_row("**all**", everything, equivalents)])


def survivor_diffs(module: str, mutants: Path = MUTANTS) -> str:
    """The changed lines of every survived / no-test mutant of ``module`` (e.g. ``clients/gan``)."""
    src = (mutants / f"{module}.py").read_text()
    codes = json.loads((mutants / f"{module}.py.meta").read_text())["exit_code_by_key"]
    text = src.splitlines()  # slicing lines by node position: get_source_segment re-splits the file per call
    funcs = {n.name: "\n".join(text[n.lineno - 1:n.end_lineno]) for n in ast.walk(ast.parse(src))
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
    p.add_argument("--verdicts", type=Path, metavar="DOC",
                   help="survivors document whose 'equivalent ...' verdicts get their own column")
    a = p.parse_args(argv)
    if not a.mutants.is_dir():
        p.error(f"{a.mutants} does not exist: run `mutmut run` first (docs/testing.md)")
    if a.verdicts is not None and not a.verdicts.is_file():
        p.error(f"--verdicts: {a.verdicts} is not a file")
    equivalent = frozenset(k for k, v in verdicts(a.verdicts).items() if v.startswith("equivalent")) \
        if a.verdicts else frozenset()
    print(survivor_diffs(a.survivors, a.mutants) if a.survivors else table(outcomes(a.mutants, equivalent)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
