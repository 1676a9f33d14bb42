"""The defenses' math: pure functions over stacked updates, each returning an ``Aggregation``.

No Flower here: the plug-ins in ``strategies/defenses/`` adapt these functions to a Strategy.
"""
