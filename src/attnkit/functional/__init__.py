"""Pure attention functions: the core every module and kernel is tested against."""

from attnkit.functional import masks, score_mods
from attnkit.functional.attention import attention, explain
from attnkit.functional.normalizers import masked_softmax
from attnkit.functional.reference import reference_attention
from attnkit.functional.weights import attention_weights

__all__ = ["attention", "explain", "attention_weights", "reference_attention",
           "masked_softmax", "masks", "score_mods"]
