"""The mutation-score tool (``tests/mutation_report.py``): outcomes from mutmut's meta files, scores by hand."""

from __future__ import annotations

import json

import mutation_report as MR


def _mutants(tmp_path):
    """A mutants/ folder with one module: 6 killed, 1 timeout, 2 survivors, 1 no-test mutant, 1 unchecked."""
    codes = {f"pkg.mod.x_f__mutmut_{i}": 1 for i in range(1, 7)}
    codes.update({"pkg.mod.x_f__mutmut_7": 36, "pkg.mod.x_f__mutmut_8": 0, "pkg.mod.x_g__mutmut_1": 0,
                  "pkg.mod.x_g__mutmut_2": 33, "pkg.mod.x_g__mutmut_3": None})
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    return tmp_path


def test_scores_count_timeouts_as_killed_and_skip_unchecked(tmp_path):
    c = MR.outcomes(_mutants(tmp_path))["pkg/mod"]
    assert (c["killed"], c["timeout"], c["survived"], c["no tests"], c["unchecked"]) == (6, 1, 2, 1, 1)
    assert MR.score(c) == 100.0 * 7 / 10  # 10 decided, 7 caught
    assert "| pkg/mod | 11 | 6 | 1 | 2 | 1 | 1 | 70.0 % |" in MR.table({"pkg/mod": c})


def test_equivalent_verdicts_leave_the_second_score_denominator(tmp_path):
    doc = tmp_path / "survivors.md"
    doc.write_text("### pkg/mod\n\n| mutant | outcome | change | verdict |\n|---|---|---|---|\n"
                   "| `x_f__mutmut_8` | survived | `a \\| b → a` | equivalent: same value |\n"
                   "| `x_g__mutmut_1` | survived | `x → y` | left: needs a slow run |\n")
    v = MR.verdicts(doc)
    assert v == {"pkg.mod.x_f__mutmut_8": "equivalent: same value", "pkg.mod.x_g__mutmut_1": "left: needs a slow run"}
    c = MR.outcomes(_mutants(tmp_path), frozenset(k for k, t in v.items() if t.startswith("equivalent")))["pkg/mod"]
    assert (c["survived"], c["equivalent"]) == (1, 1)
    assert MR.score(c) == 70.0 and MR.score(c, without_equivalent=True) == 100.0 * 7 / 9
    assert "| pkg/mod | 11 | 6 | 1 | 1 | 1 | 1 | 1 | 70.0 % | 77.8 % |" in MR.table({"pkg/mod": c})
