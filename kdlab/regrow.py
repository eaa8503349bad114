"""Moved to :mod:`kdlab.prune.regrow` (``kdlab.prune.PruneRegrow``); this name still imports for one
release, with a warning."""
from kdlab import _deprecation

_deprecation.moved_module("kdlab.regrow", "kdlab.prune.regrow")
