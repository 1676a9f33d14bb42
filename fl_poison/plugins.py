"""The plug-in registry: every attack and every defense is one module that declares itself.

A plug-in is a class with a ``name`` and a tuple of run ``keys``
(:class:`fl_poison.config.Key`); defining such a subclass of
:class:`clients.behaviour.Behaviour` (an attack) or
:class:`strategies.base.DefenseStrategy` (a defense) registers it. The run
config's schema is the core keys plus the keys of every registered plug-in,
so a new attack or defense is one new module and nothing else.

Discovery imports every module of the built-in plug-in packages (named here
as strings: the core never imports ``clients`` or ``strategies`` directly)
and of any installed distribution that declares the entry-point group
``fl_poison.plugins``. Registering a plug-in after the schema was assembled
(e.g. a class defined in a notebook or a test) invalidates the cached schema.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from typing import Any, Literal

Kind = Literal["attack", "defense"]

#: Packages whose modules are the built-in plug-ins.
PLUGIN_PACKAGES: dict[str, str] = {"attack": "clients.attacks", "defense": "strategies.defenses"}
#: Entry-point group third-party packages use to ship plug-ins (each entry point names a module).
ENTRY_POINT_GROUP = "fl_poison.plugins"

_registry: dict[str, dict[str, type]] = {"attack": {}, "defense": {}}
_lock = threading.RLock()  # guards the registry only: never held while importing
#: Serialises discovery. Separate from ``_lock`` because discovery imports modules whose import registers
#: plug-ins: with one lock, a thread importing ``clients.behaviour`` (holding that module's import lock, waiting
#: for ``_lock`` in ``register``) and a thread in ``discover`` (holding ``_lock``, waiting for that module)
#: deadlock -- which Flower's simulation hit, loading the ClientApp while the ServerApp resolved its config.
_discover_lock = threading.RLock()
_discovered = False
#: Bumped by every registration; the config schema cache compares against it.
version = 0


def register(kind: Kind, cls: type) -> None:
    """Register ``cls`` (it has ``name`` and ``keys``) as a plug-in of ``kind``.

    Re-registering a name replaces the earlier class (a module reloaded, a
    notebook cell run twice); two *different* names declaring a run key of the
    same name with different definitions is caught when the schema is built.
    """
    global version
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} must define a non-empty string `name` to be a {kind} plug-in")
    with _lock:
        _registry[kind][name] = cls
        version += 1


def unregister(kind: Kind, name: str) -> None:
    """Remove a plug-in (tests and notebooks that registered a temporary one)."""
    global version
    with _lock:
        _registry[kind].pop(name, None)
        version += 1


def discover() -> None:
    """Import the built-in plug-in modules and installed entry points (once per process)."""
    global _discovered
    with _discover_lock:
        if _discovered:
            return
        _discovered = True
        for package_name in PLUGIN_PACKAGES.values():
            package = importlib.import_module(package_name)
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{package_name}.{info.name}")
        try:
            from importlib.metadata import entry_points

            for ep in entry_points(group=ENTRY_POINT_GROUP):
                importlib.import_module(ep.value.split(":")[0])
        except Exception:  # a broken third-party plug-in must not stop the built-in ones
            import logging

            logging.getLogger("fl_poison").warning("could not load fl_poison.plugins entry points", exc_info=True)


def plugins(kind: Kind) -> dict[str, type]:
    """Registered plug-ins of ``kind`` by name (discovering the built-ins first)."""
    discover()
    with _lock:
        return dict(_registry[kind])


def get(kind: Kind, name: str) -> type:
    """The plug-in class of ``kind`` called ``name`` (KeyError with the known names otherwise)."""
    found = plugins(kind)
    if name not in found:
        raise KeyError(f"no {kind} plug-in named {name!r}; known: {', '.join(sorted(found))}")
    return found[name]


def describe() -> list[tuple[str, str, Any]]:
    """``(kind, name, class)`` of every plug-in, attacks first, by name."""
    out = []
    for kind in ("attack", "defense"):
        out += [(kind, n, c) for n, c in sorted(plugins(kind).items())]  # type: ignore[arg-type]
    return out
