"""Pure attention functions: the core every module and kernel is tested against."""

from attnkit.functional import masks, score_mods
from attnkit.functional.additive import additive_scores
from attnkit.functional.attention import attention, explain
from attnkit.functional.linear import (
    FavorFeatures,
    LinearState,
    elu_plus_one,
    linear_attention,
    linear_attention_step,
)
from attnkit.functional.normalizers import masked_softmax
from attnkit.functional.reference import reference_attention
from attnkit.functional.sparsemax import sparsemax
from attnkit.functional.weights import attention_weights

__all__ = ["attention", "explain", "attention_weights", "reference_attention",
           "masked_softmax", "sparsemax", "linear_attention", "linear_attention_step",
           "LinearState", "FavorFeatures", "elu_plus_one", "additive_scores", "masks",
           "score_mods"]
