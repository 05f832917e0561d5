"""Position information for attention: sinusoidal, learned, rotary (and ALiBi slopes).

* :func:`sinusoidal_encoding` / :class:`SinusoidalPositionalEncoding` - the fixed
  sine/cosine table of Vaswani et al. 2017, "Attention Is All You Need"
  (arXiv:1706.03762), added to the token embeddings.
* :class:`LearnedPositionalEmbedding` - one trained vector per absolute position
  (as in BERT and GPT-2), added to the token embeddings.
* :class:`RotaryEmbedding` - RoPE, Su et al. 2021, "RoFormer: Enhanced Transformer
  with Rotary Position Embedding" (arXiv:2104.09864): rotates query and key
  features by position-dependent angles so that ``q . k`` depends only on the
  relative position. Deviations from the paper: the "rotate-half" pairing
  (feature ``i`` is rotated together with feature ``i + D/2``, as in GPT-NeoX and
  LLaMA) instead of the paper's adjacent pairs ``(2i, 2i+1)``; the two are the same
  up to a fixed permutation of the head features.
* :func:`alibi_slopes` - re-exported from :mod:`attnkit.functional.score_mods`;
  ALiBi (Press et al. 2021) is a ``score_mod`` rather than a module.
"""

from __future__ import annotations

import torch
from torch import nn

from attnkit._validate import check_float, check_int
from attnkit.functional.score_mods import alibi_slopes

__all__ = [
    "sinusoidal_encoding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "alibi_slopes",
]


def _check_base(base: object) -> float:
    return check_float(base, "base", low=1.0, low_open=True)


def sinusoidal_encoding(positions: int | torch.Tensor, dim: int, *, base: float = 10000.0,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The sinusoidal position table of Vaswani et al. 2017::

        PE[pos, 2i]     = sin(pos / base^(2i / dim))
        PE[pos, 2i + 1] = cos(pos / base^(2i / dim))

    An odd ``dim`` is accepted: the formula is evaluated column by column, so the
    last column is the sine of the next frequency (the table of ``dim + 1``
    columns with its final cosine dropped). The values are computed in float64
    and cast to ``dtype``, so large positions keep full precision.

    Args:
        positions: an int ``L`` (positions ``0 .. L-1``), or a tensor of any shape
            ``(...)`` holding (integer or fractional) positions.
        dim: ``D``, the feature size (>= 1).
        base: wavelength base (10000 in the paper).
        dtype: floating dtype of the result.

    Returns:
        ``(L, D)`` for an int, ``(..., D)`` for a tensor of positions.
    """
    check_int(dim, "dim", minimum=1)
    base = _check_base(base)
    if isinstance(positions, torch.Tensor):
        if positions.dtype == torch.bool or positions.is_complex():
            raise TypeError(f"positions must be an integer or float tensor, got {positions.dtype}")
        pos = positions.to(torch.float64)
    else:
        pos = torch.arange(check_int(positions, "positions", minimum=0), dtype=torch.float64)
    pairs = torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device)  # 2i: (ceil(D/2),)
    angles = pos[..., None] * base ** (-pairs / dim)  # (..., ceil(D/2))
    table = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (..., ceil(D/2), 2)
    table = table.flatten(-2)[..., :dim]  # (..., D): sin, cos interleaved
    return table.to(dtype)


def _check_positions(x: torch.Tensor, offset: int, max_len: int, dim: int, who: str) -> int:
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{who}: x must be a tensor (B, L, {dim}), got {got}")
    if x.shape[-1] != dim:
        raise ValueError(f"{who}: x must have {dim} features in its last dim, got shape "
                         f"{tuple(x.shape)}")
    check_int(offset, "offset", minimum=0)
    length = x.shape[-2]
    if offset + length > max_len:
        raise ValueError(f"{who}: positions {offset}..{offset + length - 1} exceed max_len="
                         f"{max_len} (x has length {length} at offset {offset}); build the "
                         f"module with a larger max_len")
    return length


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed :func:`sinusoidal_encoding` table to its input.

    The table is a non-persistent buffer (no parameters, not saved in the
    ``state_dict``, moved by ``.to(device)``). The paper also multiplies the token
    embeddings by ``sqrt(dim)`` and applies dropout after the sum; both belong to
    the embedding layer that calls this module.

    Args:
        dim: ``D``, the embedding size.
        max_len: the largest number of positions (``offset + L``) supported.
        base: wavelength base (10000 in the paper).
    """

    def __init__(self, dim: int, max_len: int, *, base: float = 10000.0) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim", minimum=1)
        self.max_len = check_int(max_len, "max_len", minimum=1)
        table = sinusoidal_encoding(max_len, dim, base=base)  # (max_len, D)
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Args:
            x: ``(B, L, D)`` (any leading dims; positions run along dim -2).
            offset: position of ``x[..., 0, :]`` (the number of tokens already
                decoded when stepping a decoder).

        Returns:
            ``x + table[offset : offset + L]``, shape and dtype of ``x``.
        """
        length = _check_positions(x, offset, self.max_len, self.dim, type(self).__name__)
        return x + self.table[offset:offset + length].to(x.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_len={self.max_len}"


class LearnedPositionalEmbedding(nn.Module):
    """Adds a trained vector per absolute position (BERT, GPT-2).

    Initialized from ``N(0, 0.02^2)`` like GPT-2. Positions at or beyond
    ``max_len`` have no vector and raise ``ValueError``.

    Args:
        max_len: the number of positions with a vector.
        dim: ``D``, the embedding size.
    """

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        self.max_len = check_int(max_len, "max_len", minimum=1)
        self.dim = check_int(dim, "dim", minimum=1)
        self.weight = nn.Parameter(torch.empty(max_len, dim))  # (max_len, D)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Args:
            x: ``(B, L, D)`` (any leading dims; positions run along dim -2).
            offset: position of ``x[..., 0, :]``.

        Returns:
            ``x + weight[offset : offset + L]``, shape of ``x``.
        """
        length = _check_positions(x, offset, self.max_len, self.dim, type(self).__name__)
        return x + self.weight[offset:offset + length].to(x.dtype)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, dim={self.dim}"


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` over the last dim (split into two halves)."""
    x1, x2 = x.chunk(2, dim=-1)  # (..., D/2) each
    return torch.cat([-x2, x1], dim=-1)  # (..., D)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE) for ``(B, H, L, D)`` queries or keys.

    Feature ``i < D/2`` and feature ``i + D/2`` are rotated together by the angle
    ``pos * base^(-2i/D)``::

        out = x * cos(angle) + rotate_half(x) * sin(angle),  rotate_half([x1, x2]) = [-x2, x1]

    so ``rope(q, m) . rope(k, n)`` depends on ``m - n`` only, and norms are kept.

    Precision: the angles are computed in float64 and their cos/sin are cached in
    float32, whatever the input dtype (bf16 angles at position 1000 would be off by
    several radians). Inputs are rotated in float32 and cast back; float64 inputs
    skip the cache and are rotated with float64 cos/sin, so the float64 path stays
    exact. The cache is a non-persistent buffer that grows (to the next power of two)
    when a call reaches past it.

    Args:
        head_dim: ``D``, the per-head feature size; must be even.
        base: frequency base (10000 in the paper).
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        self.head_dim = check_int(head_dim, "head_dim", minimum=2)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings (features are "
                             f"rotated in pairs), got {head_dim}")
        self.base = _check_base(base)
        self.register_buffer("cos_cached", torch.empty(0, head_dim), persistent=False)
        self.register_buffer("sin_cached", torch.empty(0, head_dim), persistent=False)

    def _angles(self, start: int, end: int) -> torch.Tensor:
        """``(end - start, D)`` float64 angles, each frequency written twice (both halves)."""
        pairs = torch.arange(0, self.head_dim, 2, dtype=torch.float64)  # (D/2,)
        inv_freq = self.base ** (-pairs / self.head_dim)  # (D/2,)
        pos = torch.arange(start, end, dtype=torch.float64)  # (L,)
        angles = pos[:, None] * inv_freq  # (L, D/2)
        return torch.cat([angles, angles], dim=-1)  # (L, D)

    def _cos_sin(self, offset: int, length: int, x: torch.Tensor):
        end = offset + length
        if x.dtype == torch.float64:
            angles = self._angles(offset, end).to(x.device)  # (L, D)
            return angles.cos(), angles.sin()
        if self.cos_cached.shape[0] < end or self.cos_cached.device != x.device:
            size = max(end, self.cos_cached.shape[0], 1)
            size = 1 << (size - 1).bit_length()  # next power of two: grow rarely
            angles = self._angles(0, size)  # (size, D)
            self.cos_cached = angles.cos().to(device=x.device, dtype=torch.float32)
            self.sin_cached = angles.sin().to(device=x.device, dtype=torch.float32)
        return self.cos_cached[offset:end], self.sin_cached[offset:end]

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Rotate ``x`` as if its positions were ``offset .. offset + L - 1``.

        Args:
            x: ``(B, H, L, D)`` queries or keys (any leading dims; positions run
                along dim -2, features along dim -1).
            offset: position of ``x[..., 0, :]`` (the KV-cache length when decoding).

        Returns:
            ``(B, H, L, D)``, dtype of ``x``.
        """
        if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[-1] != self.head_dim:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"RotaryEmbedding: x must be (B, H, L, {self.head_dim}), got {got}")
        if not x.is_floating_point():
            raise TypeError(f"RotaryEmbedding: x must be a floating tensor, got {x.dtype}")
        check_int(offset, "offset", minimum=0)
        cos, sin = self._cos_sin(offset, x.shape[-2], x)  # (L, D) each
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        xa = x.to(acc)
        return (xa * cos + _rotate_half(xa) * sin).to(x.dtype)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}"
