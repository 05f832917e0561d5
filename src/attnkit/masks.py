"""Public alias of :mod:`attnkit.functional.masks` (``import attnkit.masks``)."""

from attnkit.functional.masks import *  # noqa: F403
from attnkit.functional.masks import __all__  # noqa: F401
