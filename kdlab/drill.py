"""Moved to :mod:`kdlab.course.drill` (the interview drill); this name still imports for
one release, with a warning."""
from kdlab import _deprecation

_deprecation.moved_module("kdlab.drill", "kdlab.course.drill")
