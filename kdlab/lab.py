"""Moved to :mod:`kdlab.course.lab` (the ``kdlab lab`` command); this name still imports for
one release, with a warning."""
from kdlab import _deprecation

_deprecation.moved_module("kdlab.lab", "kdlab.course.lab")
