"""What the repository says about itself stays true: no tracker numbers, lists that match the registry, paths that exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
#: A reference to the tracker: "issue" or "issues", then a number ("#" and a space or hyphen allowed between).
TRACKER = re.compile(r"(?<![a-z])issues?[\s_-]*#?\d+", re.IGNORECASE)


def tracked(*suffixes: str) -> list[Path]:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [REPO / p for p in out.splitlines() if p.endswith(suffixes) and (REPO / p).is_file()]


def test_the_pattern_finds_tracker_references_and_nothing_else():
    hits = ["see issue " + "12", "(Issue " + "#" + "8)", "the pre-issue-" + "12 loop", "def test_issue" + "8_keys",
            "issues " + "3 and 4"]
    misses = ["a known issue", "verify_directly_issued_by(ca)", "GanTracker", "issue the command 2 times"]
    assert all(TRACKER.search(t) for t in hits)
    assert not any(TRACKER.search(t) for t in misses)


def test_no_tracker_numbers_in_code_tests_or_docs():
    """Code says what is and why; history belongs in git and CHANGELOG.md (which holds no numbers either)."""
    found = []
    for path in tracked(".py", ".md", ".toml"):
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if TRACKER.search(line):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()[:100]}")
    assert not found, "tracker references:\n" + "\n".join(found)


def _layout_list(folder: str) -> list[str]:
    """The names in parentheses after ``folder`` in the README's Layout block."""
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("## Layout"):]
    block = block[:block.index("```", block.index("```") + 3)]
    m = re.search(re.escape(folder) + r" \(([^)]*)\)", " ".join(block.split()))
    assert m, f"the README's Layout names no list after {folder}"
    return [name.strip() for name in m.group(1).split(",")]


def test_readme_layout_lists_every_registered_attack_and_defense():
    from fl_poison import plugins

    assert _layout_list("clients/attacks/") == sorted(n for n in plugins.plugins("attack") if n != "none")
    assert _layout_list("strategies/defenses/") == sorted(plugins.plugins("defense"))


def test_readme_tables_name_every_registered_attack_and_defense():
    from fl_poison import plugins

    readme = (REPO / "README.md").read_text()
    for kind, row in (("attack", "| attacks |"), ("defense", "| defenses |")):
        line = next(line for line in readme.splitlines() if line.startswith(row))
        named = set(re.findall(r"`([a-z0-9-]+)", line))
        missing = sorted(set(plugins.plugins(kind)) - {"none"} - named)
        assert not missing, f"README's {row} row lacks {missing}"


def test_readme_links_inside_the_repository():
    readme = (REPO / "README.md").read_text()
    assert "../shared/DESIGN.md" not in readme
    assert "](docs/architecture.md)" in readme
    for target in re.findall(r"\]\(([^)#:]+)\)", readme):  # relative links only (no http:, no anchors)
        assert (REPO / target).exists(), target


def test_every_path_the_architecture_doc_cites_exists():
    text = (REPO / "docs" / "architecture.md").read_text()
    cited = set()
    for token in re.findall(r"`([^`\s]+)`", text):
        if token.endswith((".py", ".md", ".toml", "/")) and not token.startswith(("-", "http")):
            cited.add(token)
    assert len(cited) >= 30
    missing = []
    for path in sorted(cited):
        ok = (REPO / path).exists()
        if not ok and "/" not in path:  # a bare file name under its package's heading, e.g. `formats.py`
            ok = any(any((REPO / pkg).rglob(path)) for pkg in ("fl_poison", "clients", "strategies"))
        if not ok:
            missing.append(path)
    assert not missing, f"docs/architecture.md cites paths that do not exist: {missing}"


def test_every_test_file_sits_in_the_folder_of_its_layer():
    """tests/ holds conftest.py and helper modules; each test file is in attacks/, defenses/, core/, app/, ... ."""
    assert sorted(p.name for p in (REPO / "tests").glob("test_*.py")) == []
    assert all(p.parent.parent == REPO / "tests" for p in (REPO / "tests").rglob("test_*.py"))


def test_test_file_basenames_are_unique_across_folders():
    """The folders have no __init__.py: pytest imports each test file by its basename."""
    names = [p.name for p in (REPO / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)


def test_every_test_path_the_docs_cite_exists():
    docs = [REPO / "README.md", REPO / "CHANGELOG.md", *(REPO / "docs").glob("*.md"), *(REPO / "examples").glob("*/README.md"),
            REPO / "pyproject.toml", REPO / "tests" / "known_bugs_mutations.py"]
    cited = {m for path in docs for m in re.findall(r"tests/[\w/]+\.py", path.read_text())}
    assert len(cited) >= 10
    missing = sorted(p for p in cited if not (REPO / p).exists())
    assert not missing, f"test paths cited that do not exist: {missing}"
