"""Attack plug-ins: one module per attack, each declaring its name, run keys and behaviour.

Every module here is imported by :func:`fl_poison.plugins.discover`; a
:class:`clients.behaviour.Behaviour` subclass with a ``name`` registers itself.
"""
