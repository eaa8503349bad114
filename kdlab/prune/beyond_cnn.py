"""Renamed :mod:`kdlab.prune.units` (attention heads, recurrent hidden units, embedding
rows); this name still imports for one release, with a warning."""
from kdlab import _deprecation

_deprecation.moved_module("kdlab.prune.beyond_cnn", "kdlab.prune.units")
