"""fl-poison plug-ins of a lab of our own: ``attack=mylab-sign-flip`` and ``defense=mylab-norm-filter``.

Nothing here is imported by hand: the entry points in ``pyproject.toml`` name the modules, and fl-poison
imports them when it assembles its run keys.
"""
