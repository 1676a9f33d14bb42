"""Defaults shared by the pure defense functions and the run keys: one default, defined once.

No imports on purpose: the plug-ins' run keys (``strategies/defenses/``) take
these constants as their defaults, and the pure functions use them as their
keyword defaults, so the two layers cannot drift apart.
"""

#: Fraction trimmed from EACH end by the coordinate-wise trimmed mean (run key ``trim-beta``).
TRIM_BETA = 0.1
#: NDC: clip over-long updates to the bound (Sun et al. 2019), or "drop" them (ADA's code) (``ndc-mode``).
NDC_MODE = "clip"
#: NDC norm bound: the round's median norm (ADA's code), or a number (``ndc-bound``).
NDC_BOUND = "median"
#: k-means initialisations: the default of LFighter's run key ``lfighter-n-init``; the PCA filter always uses
#: this many (it has no run key for it).
KMEANS_N_INIT = 10
