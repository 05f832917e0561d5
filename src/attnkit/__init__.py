"""attnkit: attention mechanisms from Bahdanau to FlashAttention under one API.

Quick tour::

    import attnkit
    from attnkit import masks, score_mods

    out, _ = attnkit.attention(q, k, v, causal=True)                 # (B, Hq, Lq, Dv)
    out, w = attnkit.attention(q, k, v, mask=masks.sliding_window(64),
                               return_weights=True)
    attnkit.explain(q, k, v, score_mod=score_mods.softcap(30.0))     # which backend, why
"""

from attnkit import masks, score_mods
from attnkit.functional.attention import attention, explain
from attnkit.functional.weights import attention_weights

__version__ = "0.1.0"

__all__ = ["attention", "explain", "attention_weights", "masks", "score_mods", "__version__"]
