"""Moved to :mod:`kdlab.data.tasks` (tasks beyond image classification); this name still imports for
one release, with a warning."""
from kdlab import _deprecation

_deprecation.moved_module("kdlab.tasks", "kdlab.data.tasks")
