"""Moved to :mod:`kdlab.course.widgets` (the lessons' interactive controls); this name still imports for
one release, with a warning."""
from kdlab import _deprecation

_deprecation.moved_module("kdlab.widgets", "kdlab.course.widgets")
