"""Defaults shared by the pure defense functions and the run keys (issue 8: one default, defined once).

No imports on purpose: ``fl_poison/config.py`` reads these constants for its
schema, and the pure functions use them as their keyword defaults, so the two
layers cannot drift apart again.
"""

#: Fraction trimmed from EACH end by the coordinate-wise trimmed mean (run key ``trim-beta``).
TRIM_BETA = 0.1
#: NDC: clip over-long updates to the bound (Sun et al. 2019), or "drop" them (ADA's code) (``ndc-mode``).
NDC_MODE = "clip"
#: NDC norm bound: the round's median norm (ADA's code), or a number (``ndc-bound``).
NDC_BOUND = "median"
#: k-means initialisations in LFighter's mild mode and the PCA filter (``lfighter-n-init``).
KMEANS_N_INIT = 10
