"""Public alias of :mod:`attnkit.functional.score_mods` (``import attnkit.score_mods``)."""

from attnkit.functional.score_mods import *  # noqa: F403
from attnkit.functional.score_mods import __all__  # noqa: F401
