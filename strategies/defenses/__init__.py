"""Defense plug-ins: one module per defense, each a thin Flower Strategy over a pure function.

Every module here is imported by :func:`fl_poison.plugins.discover`; a
:class:`strategies.base.DefenseStrategy` subclass with a ``name`` registers
itself with its run keys. The classes are re-exported here so a Flower
ServerApp can use any of them directly (``strategies.defenses.LFighter(...)``).
"""

from strategies.defenses.bulyan import Bulyan
from strategies.defenses.fedavg import FedAvgDefense
from strategies.defenses.foolsgold import FoolsGold
from strategies.defenses.krum import Krum, MultiKrum
from strategies.defenses.lfighter import LFighter
from strategies.defenses.median import Median
from strategies.defenses.ndc import NormDifferenceClipping
from strategies.defenses.pca import PCAFilter
from strategies.defenses.repeated_median import RepeatedMedian
from strategies.defenses.trimmed_mean import TrimmedMean

__all__ = ["Bulyan", "FedAvgDefense", "FoolsGold", "Krum", "LFighter", "Median", "MultiKrum",
           "NormDifferenceClipping", "PCAFilter", "RepeatedMedian", "TrimmedMean"]
