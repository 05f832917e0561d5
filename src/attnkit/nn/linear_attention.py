"""Multi-head linear self-attention with constant-time recurrent decoding.

Katharopoulos, Vyas, Pappas & Fleuret, "Transformers are RNNs: Fast Autoregressive
Transformers with Linear Attention", 2020, arXiv:2006.16236 (and the fast-weight
view of Schlag, Irie & Schmidhuber, 2021, arXiv:2102.11174). The module owns the
q/k/v/output projections and the feature map; the mathematics is in
:mod:`attnkit.functional.linear`.

A causal module returns its :class:`~attnkit.functional.linear.LinearState` so a
prompt can be processed in parallel (chunk-wise) and generation continued one
token at a time, each step costing the same however long the prefix.

Deviation from the paper: none beyond those of the functional core (``eps`` in
the denominator; no key-max stabilizer for FAVOR+).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from attnkit._validate import check_bool, check_float, check_int
from attnkit.functional.linear import (
    FavorFeatures,
    FeatureMap,
    LinearState,
    elu_plus_one,
    identity,
    linear_attention,
    linear_attention_step,
)
from attnkit.nn._inputs import check_dtype

__all__ = ["LinearAttention"]

# name -> factory(head_dim, num_features, seed); a table rather than an if/elif chain.
FEATURE_MAPS: dict[str, Callable[[int, int | None, int | None], FeatureMap]] = {
    "elu": lambda head_dim, num_features, seed: elu_plus_one,
    "identity": lambda head_dim, num_features, seed: identity,
    "favor": lambda head_dim, num_features, seed: FavorFeatures(head_dim, num_features,
                                                                seed=seed),
}


class LinearAttention(nn.Module):
    """Multi-head linear self-attention on batch-first ``(B, L, E)`` inputs.

    Args:
        embed_dim: ``E``; must be divisible by ``num_heads``.
        num_heads: ``H``; each head has ``head_dim = E // H``.
        feature_map: ``"elu"`` (``elu + 1``, the paper's), ``"favor"`` (FAVOR+ random
            features estimating softmax attention), ``"identity"`` (plain fast
            weights; pair it with ``normalize=False``), or any callable
            ``(..., head_dim) -> (..., M)``.
        causal: token ``i`` attends to tokens ``<= i``; enables recurrent decoding.
        num_features: ``M`` for ``"favor"`` (default ``head_dim * ln(head_dim)``).
        seed: seed of the FAVOR+ projection draw (None: torch's global RNG).
        bias: biases in the four projections.
        chunk_size: positions per chunk of the causal parallel form.
        eps: added to the attention denominator.
        normalize: divide by the attention denominator (False: unnormalized fast weights).
        device, dtype: of the parameters.
    """

    def __init__(self, embed_dim: int, num_heads: int, *,
                 feature_map: str | FeatureMap = "elu", causal: bool = False,
                 num_features: int | None = None, seed: int | None = None, bias: bool = True,
                 chunk_size: int = 64, eps: float = 1e-6, normalize: bool = True,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        for name, value in (("embed_dim", embed_dim), ("num_heads", num_heads),
                            ("chunk_size", chunk_size)):
            check_int(value, name, minimum=1)
        for name, value in (("causal", causal), ("bias", bias), ("normalize", normalize)):
            check_bool(value, name)
        eps = check_float(eps, "eps", low=0.0, low_open=True)
        if num_features is not None:
            check_int(num_features, "num_features (an int or None)", minimum=1)
        if seed is not None:
            check_int(seed, "seed (an int or None)", minimum=0)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.causal = causal
        self.chunk_size = chunk_size
        self.eps = eps
        self.normalize = normalize
        if isinstance(feature_map, str):
            if feature_map not in FEATURE_MAPS:
                raise ValueError(f"feature_map must be one of {sorted(FEATURE_MAPS)} or a "
                                 f"callable, got {feature_map!r}")
            feature_map = FEATURE_MAPS[feature_map](self.head_dim, num_features, seed)
        elif not callable(feature_map):
            raise TypeError(f"feature_map must be a name or a callable, got "
                            f"{type(feature_map).__name__}")
        self.feature_map = feature_map
        factory = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, L, hd)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None,
                state: LinearState | None = None,
                ) -> tuple[torch.Tensor, LinearState | None]:
        """Attend over ``x``, continuing from ``state`` if given.

        Args:
            x: ``(B, L, E)``.
            mask: ``(B, L)`` bool key-padding mask, True = real token.
            state: causal modules only: the state returned by an earlier call
                (``fast_weights (B, H, head_dim, M)``, ``normalizer (B, H, M)``);
                ``x`` continues that sequence. With ``L == 1`` this is one
                constant-time recurrent step.

        Returns:
            ``(out, state)``: ``out (B, L, E)``; ``state`` the
            :class:`~attnkit.functional.linear.LinearState` after ``x`` for a causal
            module (still attached to the graph; ``detach`` it for truncated
            backpropagation), None otherwise.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"LinearAttention: x must be a torch.Tensor (B, L, E), got "
                            f"{type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.embed_dim or x.shape[1] == 0:
            raise ValueError(f"LinearAttention: x must be (B, L >= 1, E) with E = embed_dim = "
                             f"{self.embed_dim}, got {tuple(x.shape)}")
        check_dtype(x, "x", self.q_proj.weight.dtype, who="LinearAttention")
        if state is not None and not isinstance(state, LinearState):
            raise TypeError(f"LinearAttention: state must be None or the LinearState returned "
                            f"by an earlier call, got {type(state).__name__}")
        if state is not None and not self.causal:
            raise ValueError("state is only meaningful for a causal LinearAttention "
                             "(construct it with causal=True)")
        B, L, _ = x.shape
        q = self._heads(self.q_proj(x))
        k = self._heads(self.k_proj(x))
        v = self._heads(self.v_proj(x))
        options = {"feature_map": self.feature_map, "eps": self.eps, "normalize": self.normalize}
        if L == 1 and state is not None:
            if mask is not None and (not isinstance(mask, torch.Tensor)
                                     or tuple(mask.shape) != (B, 1)):
                got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask)
                raise ValueError(f"mask must be a (B, L) = {(B, 1)} bool tensor, got {got}")
            out, new_state = linear_attention_step(
                q[:, :, 0], k[:, :, 0], v[:, :, 0], state,
                mask=None if mask is None else mask[:, 0], **options)
            out = out[:, :, None]  # (B, H, 1, hd)
        else:
            out, new_state = linear_attention(q, k, v, causal=self.causal, mask=mask,
                                              state=state, chunk_size=self.chunk_size,
                                              **options)
        out = out.transpose(1, 2).reshape(B, L, self.embed_dim)  # (B, L, E)
        return self.out_proj(out), (new_state if self.causal else None)

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"causal={self.causal}, chunk_size={self.chunk_size}, "
                f"normalize={self.normalize}")
