"""Moved to :mod:`kdlab.models.zoo` (trained models, ``kdlab.models.pretrained``); this name still imports for
one release, with a warning."""
from kdlab import _deprecation

_deprecation.moved_module("kdlab.zoo", "kdlab.models.zoo")
