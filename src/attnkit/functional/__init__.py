"""Pure attention functions: the core every module and kernel is tested against."""

from attnkit.functional import masks, score_mods
from attnkit.functional.attention import attention, explain
from attnkit.functional.reference import reference_attention

__all__ = ["attention", "explain", "reference_attention", "masks", "score_mods"]
