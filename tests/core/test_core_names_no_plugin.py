"""The core names no attack or defense: a plug-in's special cases live in the plug-in, behind its hooks.

Scans every module of ``fl_poison/`` for (1) a string literal equal to a registered plug-in's name
(``attack == "gan"``, ``{"bulyan": ...}``) and (2) imports of ``clients`` / ``strategies``: none outside
the app layer (``fl_poison/app/``, which runs the apps and may import them), and of the plug-in packages
(``clients.attacks``, ``strategies.defenses``) none at all. The scanner itself is tested on planted code,
so this test can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from fl_poison import plugins

REPO = Path(__file__).resolve().parents[2]
#: The core may spell ``none`` (the honest behaviour, the base class itself) anywhere, and the default of the
#: ``defense`` key in one place (``config.DEFAULT_DEFENSE``).
DEFAULT_SITE = ("config.py", "fedavg")
PLUGIN_PACKAGES = ("clients.attacks", "strategies.defenses")
PLUGIN_LAYERS = ("clients", "strategies")


def plugin_names() -> set[str]:
    return set(plugins.plugins("attack")) | set(plugins.plugins("defense"))


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def violations(root: Path, names: set[str], app_dir: str = "app") -> list[str]:
    """``file:line: why`` for every plug-in name or forbidden import under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        in_app = rel.parts[0] == app_dir
        for line, module in _imports(tree):
            if _within(module, PLUGIN_PACKAGES) or (not in_app and _within(module, PLUGIN_LAYERS)):
                found.append(f"{rel}:{line}: imports {module}")
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names):
                continue
            if node.value == "none" or (rel.as_posix(), node.value) == DEFAULT_SITE:
                continue
            found.append(f"{rel}:{node.lineno}: names the plug-in {node.value!r}")
    return found


def test_the_core_names_no_plugin():
    found = violations(REPO / "fl_poison", plugin_names())
    assert not found, "the core names plug-ins (declare a hook on the plug-in instead):\n" + "\n".join(found)


def test_config_is_the_lowest_layer():
    """config.py imports nothing of fl_poison but the registry (the plug-ins' keys), lazily."""
    tree = ast.parse((REPO / "fl_poison" / "config.py").read_text(encoding="utf-8"))
    ours = sorted({m for _, m in _imports(tree) if m.split(".")[0] in ("fl_poison", *PLUGIN_LAYERS)})
    assert ours == ["fl_poison"], ours  # `from fl_poison import plugins`


PLANTED = {
    "names.py": 'def f(cfg):\n    return cfg["attack"] == "gan"\n',
    "table.py": 'RULES = {"bulyan": 4}\n',
    "imports.py": "from strategies.defenses.krum import check_budget\n",
    "layer.py": "import clients.behaviour\n",
    "app/ok.py": "from clients.behaviour import Behaviour\n",
    "app/bad.py": "from clients.attacks import gan\n",
    "config.py": 'DEFAULT = "fedavg"\nOTHER = "none"\n',
}


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_the_scan_catches_planted_names_and_imports(tmp_path, planted):
    target = tmp_path / planted
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(PLANTED[planted])
    found = violations(tmp_path, {"gan", "bulyan", "fedavg", "none"})
    if planted in ("app/ok.py", "config.py"):  # the app layer may import clients; the default may be spelt
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(f"{planted}:"), found
