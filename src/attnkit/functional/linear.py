"""Linear attention: kernel feature maps instead of softmax, in parallel and recurrent form.

Katharopoulos, Vyas, Pappas & Fleuret, "Transformers are RNNs: Fast Autoregressive
Transformers with Linear Attention", 2020, arXiv:2006.16236. Softmax similarity
``exp(q . k)`` is replaced by ``phi(q) . phi(k)`` for a feature map ``phi``, so
attention factorizes::

    out_i = S phi(q_i) / (z . phi(q_i)),   S = sum_j v_j phi(k_j)^T,   z = sum_j phi(k_j)

and costs O(L M Dv) instead of O(L^2 D) (``M`` = feature dim). Under a causal mask
the sums run over ``j <= i``, which is a recurrence: the fast-weight view of
Schlag, Irie & Schmidhuber, "Linear Transformers Are Secretly Fast Weight
Programmers", 2021, arXiv:2102.11174, writes it as::

    S_t = S_{t-1} + v_t phi(k_t)^T     (fast weights, Dv x M)
    z_t = z_{t-1} + phi(k_t)           (normalizer, M)
    out_t = S_t phi(q_t) / (z_t . phi(q_t) + eps)

Three forms of the same function live here, each the test oracle of the others:

* :func:`linear_attention` with ``causal=False``: the two sums once, O(L M Dv).
* :func:`linear_attention` with ``causal=True``: chunk-wise parallel form. Within
  a chunk of ``C`` positions a masked ``C x C`` product; across chunks the running
  state ``(S, z)``, taken as a cumulative sum of per-chunk states. Memory is
  O(L C + (L / C) M Dv) per head: neither the O(L^2) score matrix nor the
  O(L M Dv) per-position states.
* :func:`linear_attention_step`: one recurrent step with the explicit state, for
  constant-time decoding.

Feature maps: :func:`elu_plus_one` (the paper's choice), :func:`identity` (the
plain fast-weight programmer; use it with ``normalize=False``, since
``q . sum k`` can be zero or negative), and :class:`FavorFeatures`, the positive
orthogonal random features of FAVOR+ (Choromanski et al., "Rethinking Attention
with Performers", 2020, arXiv:2009.14794), an unbiased estimate of the softmax
kernel ``exp(q . k / sqrt(D))``.

Deviations: the paper's ``eps`` is kept (added to the denominator), so a row with
nothing to attend to (all its keys padded) yields zeros; ``normalize=False`` drops
the denominator (a plain fast-weight memory read). FAVOR+ here has no
data-dependent stabilizer: Performer subtracts the maximum over all keys of the
sequence, which a recurrent decoder cannot know in advance; the exponent is
computed in float32 instead (it overflows only for ``|w . x| > ~88``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from attnkit._validate import check_float, check_int
from attnkit.functional.normalizers import compute_dtype

__all__ = ["FeatureMap", "LinearState", "elu_plus_one", "identity", "FavorFeatures",
           "linear_attention", "linear_attention_step"]

FeatureMap = Callable[[torch.Tensor], torch.Tensor]
"""``phi(x)``: ``(..., D) -> (..., M)``, applied to queries and keys alike."""


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """``elu(x) + 1``, Katharopoulos et al.'s positive feature map: ``(..., D) -> (..., D)``."""
    return F.elu(x) + 1.0


def identity(x: torch.Tensor) -> torch.Tensor:
    """``phi(x) = x``: ``(..., D) -> (..., D)``. Unnormalized fast weights (use
    ``normalize=False``: the denominator ``q . sum k`` is not sign-definite)."""
    return x


class FavorFeatures(nn.Module):
    """FAVOR+ positive random features: ``phi(q) . phi(k)`` estimates ``exp(q . k / sqrt(D))``.

    ``phi(x) = exp(W x' - |x'|^2 / 2) / sqrt(M)`` with ``x' = x / D^(1/4)`` (so the
    estimated kernel is the one of scaled-dot attention with the default scale)
    and ``W`` an ``(M, D)`` matrix of Gaussian rows. With ``orthogonal=True`` the rows
    come in blocks of ``D`` exactly orthogonal directions, rescaled to the norms of
    independent Gaussian vectors (chi distribution), which keeps each row's
    marginal Gaussian and lowers the variance (Choromanski et al. 2020, Sec. 2.4).

    Args:
        head_dim: ``D``, the size of the last axis of the inputs.
        num_features: ``M``; default ``round(D ln D)`` (at least ``D``), the
            paper's ``Theta(D log D)``.
        seed: seed of the projection draw; None draws from torch's global RNG.
        orthogonal: orthogonal blocks (FAVOR+) or i.i.d. Gaussian rows.

    The projection is a buffer (saved in ``state_dict``: decoding must use the
    features the model was trained with). Call :meth:`redraw` to resample it.
    Casting the module to a half dtype rounds the buffer too; the result is still
    a random (nearly orthogonal) draw, and features are computed in float32.
    """

    projection: torch.Tensor

    def __init__(self, head_dim: int, num_features: int | None = None, *,
                 seed: int | None = None, orthogonal: bool = True) -> None:
        super().__init__()
        check_int(head_dim, "head_dim", minimum=1)
        if num_features is None:
            num_features = max(head_dim, round(head_dim * math.log(head_dim)))
        check_int(num_features, "num_features", minimum=1)
        self.head_dim = head_dim
        self.num_features = num_features
        self.orthogonal = orthogonal
        self.register_buffer("projection", self._draw(seed))  # (M, D)

    def _draw(self, seed: int | None) -> torch.Tensor:
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        D, M = self.head_dim, self.num_features
        if not self.orthogonal:
            return torch.randn(M, D, generator=gen, dtype=torch.float64).float()
        gauss = torch.randn(-(-M // D), D, D, generator=gen, dtype=torch.float64)
        ortho, upper = torch.linalg.qr(gauss)  # (N, D, D) each
        # Fixing the signs of R's diagonal makes each Q Haar-distributed.
        ortho = ortho * torch.sign(torch.diagonal(upper, dim1=-2, dim2=-1))[:, None, :]
        rows = ortho.transpose(-1, -2).reshape(-1, D)[:M]  # (M, D), orthonormal within blocks
        norms = torch.randn(M, D, generator=gen, dtype=torch.float64).norm(dim=1)  # chi(D)
        return (rows * norms[:, None]).float()

    @torch.no_grad()
    def redraw(self, seed: int | None = None) -> None:
        """Resample the projection in place (same device and dtype)."""
        self.projection.copy_(self._draw(seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (..., D) -> features (..., M)`` in ``x``'s dtype, computed in float32
        (float64 for float64 inputs)."""
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"FavorFeatures: x must end in head_dim={self.head_dim}, got "
                             f"shape {tuple(x.shape)}")
        acc = compute_dtype(x.dtype)
        scaled = x.to(acc) * self.head_dim ** -0.25  # (..., D)
        logits = scaled @ self.projection.to(acc).T  # (..., M)
        sq_norm = 0.5 * (scaled * scaled).sum(dim=-1, keepdim=True)  # (..., 1)
        feats = torch.exp(logits - sq_norm) * self.num_features ** -0.5
        return feats.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"head_dim={self.head_dim}, num_features={self.num_features}, "
                f"orthogonal={self.orthogonal}")


class LinearState(NamedTuple):
    """Recurrent state of causal linear attention after ``t`` tokens.

    fast_weights: ``(B, H, Dv, M)``, ``S_t = sum_{j<=t} v_j phi(k_j)^T``.
    normalizer: ``(B, H, M)``, ``z_t = sum_{j<=t} phi(k_j)``.

    Kept in float32 (float64 for float64 inputs) whatever the input dtype, so long
    decodes do not accumulate in half precision.
    """

    fast_weights: torch.Tensor
    normalizer: torch.Tensor


def _check_state(state: object, batch: int, heads: int, v_dim: int, feat_dim: int,
                 acc: torch.dtype, device: torch.device) -> LinearState:
    if state is None:
        return LinearState(torch.zeros(batch, heads, v_dim, feat_dim, dtype=acc, device=device),
                           torch.zeros(batch, heads, feat_dim, dtype=acc, device=device))
    if not isinstance(state, tuple) or len(state) != 2:
        raise TypeError(f"state must be a LinearState (fast_weights, normalizer) or None, got "
                        f"{type(state).__name__}")
    fast, norm = state
    want_fast, want_norm = (batch, heads, v_dim, feat_dim), (batch, heads, feat_dim)
    if tuple(fast.shape) != want_fast or tuple(norm.shape) != want_norm:
        raise ValueError(f"state shapes must be fast_weights (B, H, Dv, M) = {want_fast} and "
                         f"normalizer (B, H, M) = {want_norm}, got {tuple(fast.shape)} and "
                         f"{tuple(norm.shape)}")
    return LinearState(fast.to(acc), norm.to(acc))


def _features(feature_map: FeatureMap, x: torch.Tensor, name: str) -> torch.Tensor:
    feats = feature_map(x)
    if not isinstance(feats, torch.Tensor) or feats.shape[:-1] != x.shape[:-1]:
        got = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise ValueError(f"feature_map must map {name} of shape {tuple(x.shape)} to "
                         f"(..., M) with the same leading dims, got {got}")
    return feats.to(x.dtype)


def _check_common(feature_map: object, eps: object) -> float:
    if not callable(feature_map):
        raise TypeError(f"feature_map must be a callable (..., D) -> (..., M), got "
                        f"{type(feature_map).__name__}")
    return check_float(eps, "eps", low=0.0)


def _check_tensors(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dims: int,
                   layout: str) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != dims:
            raise ValueError(f"{name} must be {dims}-D {layout}, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise TypeError(f"{name}.dtype {t.dtype} differs from q.dtype {q.dtype}; "
                            f"cast all three to one dtype")


def _check_mask(mask: object, shape: tuple[int, ...], layout: str) -> None:
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"mask must be a bool key-padding tensor (True = real token), got {got}")
    if tuple(mask.shape) != shape:
        raise ValueError(f"mask must be a key-padding mask {layout} = {shape}, got "
                         f"{tuple(mask.shape)}")


def _read_out(numer: torch.Tensor, denom: torch.Tensor, eps: float,
              normalize: bool) -> torch.Tensor:
    """``numer (..., Dv)``, ``denom (...)`` -> ``(..., Dv)``. With nothing attended both
    are exactly 0, and ``0 / eps`` gives the zero output the conventions ask for."""
    return numer / (denom + eps).unsqueeze(-1) if normalize else numer


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    feature_map: FeatureMap = elu_plus_one,
    causal: bool = False,
    mask: torch.Tensor | None = None,
    state: LinearState | None = None,
    chunk_size: int = 64,
    eps: float = 1e-6,
    normalize: bool = True,
) -> tuple[torch.Tensor, LinearState]:
    """Linear attention ``phi(q) S / (phi(q) . z)`` in parallel form.

    Args:
        q: ``(B, H, Lq, D)`` queries.
        k: ``(B, H, Lk, D)`` keys.
        v: ``(B, H, Lk, Dv)`` values.
        feature_map: ``phi``, ``(..., D) -> (..., M)``: :func:`elu_plus_one`,
            :func:`identity`, a :class:`FavorFeatures` or any callable.
        causal: query ``i`` reads keys ``j <= i`` (needs ``Lq == Lk``); otherwise all keys.
        mask: ``(B, Lk)`` bool key-padding mask, True = real token; padded keys
            contribute nothing (also not to the returned state).
        state: a :class:`LinearState` ``(fast_weights (B, H, Dv, M), normalizer
            (B, H, M))`` of earlier tokens that every query also reads (a prefix);
            None = no prefix.
        chunk_size: ``C``, positions per chunk of the causal form; any value gives
            the same result up to rounding, it trades O(L C) for O(L M Dv / C) memory.
        eps: added to the denominator.
        normalize: divide by ``phi(q) . z``; False gives unnormalized fast weights.

    Returns:
        ``(out, state)``: ``out (B, H, Lq, Dv)`` in the input dtype, computed in
        float32 (float64 for float64 inputs); ``state`` the :class:`LinearState`
        after the prefix and all ``Lk`` keys, to continue with
        :func:`linear_attention_step`.

    Example:
        >>> import torch
        >>> q = k = v = torch.randn(2, 4, 100, 16)
        >>> out, state = linear_attention(q, k, v, causal=True, chunk_size=32)
        >>> out.shape, state.fast_weights.shape
        (torch.Size([2, 4, 100, 16]), torch.Size([2, 4, 16, 16]))
    """
    _check_tensors(q, k, v, 4, "(B, H, L, D)")
    eps = _check_common(feature_map, eps)
    B, H, Lq, D = q.shape
    Lk, Dv = k.shape[2], v.shape[3]
    if tuple(k.shape[:2]) != (B, H) or tuple(v.shape[:3]) != (B, H, Lk) or k.shape[3] != D:
        raise ValueError(f"expected q (B, H, Lq, D), k (B, H, Lk, D), v (B, H, Lk, Dv) with "
                         f"matching B, H, Lk and D, got q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    if causal and Lq != Lk:
        raise ValueError(f"causal=True needs Lq == Lk, got q {tuple(q.shape)}, k {tuple(k.shape)}; "
                         f"to extend a prefix pass its state")
    check_int(chunk_size, "chunk_size", minimum=1)
    _check_mask(mask, (B, Lk), "(B, Lk)")

    acc = compute_dtype(q.dtype)
    phi_q = _features(feature_map, q.to(acc), "q")  # (B, H, Lq, M)
    phi_k = _features(feature_map, k.to(acc), "k")  # (B, H, Lk, M)
    if phi_q.shape[-1] != phi_k.shape[-1]:
        raise ValueError(f"feature_map gave {phi_q.shape[-1]} features for q but "
                         f"{phi_k.shape[-1]} for k")
    values = v.to(acc)
    if mask is not None:
        # where, not multiply: a padded token's garbage (even inf) must not leak as NaN.
        keep = mask[:, None, :, None]  # (B, 1, Lk, 1)
        phi_k = torch.where(keep, phi_k, 0.0)
        values = torch.where(keep, values, 0.0)
    prefix = _check_state(state, B, H, Dv, phi_q.shape[-1], acc, q.device)

    if causal:
        out, final = _causal_chunked(phi_q, phi_k, values, prefix, chunk_size, eps, normalize)
    else:
        fast = prefix.fast_weights + torch.einsum("bhlv,bhlm->bhvm", values, phi_k)
        norm = prefix.normalizer + phi_k.sum(dim=2)  # (B, H, M)
        numer = torch.einsum("bhlm,bhvm->bhlv", phi_q, fast)  # (B, H, Lq, Dv)
        denom = torch.einsum("bhlm,bhm->bhl", phi_q, norm)  # (B, H, Lq)
        out, final = _read_out(numer, denom, eps, normalize), LinearState(fast, norm)
    return out.to(q.dtype), final


def _causal_chunked(phi_q: torch.Tensor, phi_k: torch.Tensor, values: torch.Tensor,
                    prefix: LinearState, chunk_size: int, eps: float,
                    normalize: bool) -> tuple[torch.Tensor, LinearState]:
    """Causal form on ``phi_q, phi_k (B, H, L, M)``, ``values (B, H, L, Dv)``."""
    B, H, L, M = phi_q.shape
    Dv = values.shape[-1]
    C = min(chunk_size, L)
    N = -(-L // C)
    pad = N * C - L
    if pad:
        # Zero features after the end add nothing to any state; their outputs are cut.
        phi_q, phi_k, values = (F.pad(t, (0, 0, 0, pad)) for t in (phi_q, phi_k, values))
    qc = phi_q.reshape(B, H, N, C, M)
    kc = phi_k.reshape(B, H, N, C, M)
    vc = values.reshape(B, H, N, C, Dv)

    chunk_fast = torch.einsum("bhncv,bhncm->bhnvm", vc, kc)  # (B, H, N, Dv, M)
    chunk_norm = kc.sum(dim=3)  # (B, H, N, M)
    fast_after = prefix.fast_weights[:, :, None] + chunk_fast.cumsum(dim=2)  # (B, H, N, Dv, M)
    norm_after = prefix.normalizer[:, :, None] + chunk_norm.cumsum(dim=2)  # (B, H, N, M)
    # The state a chunk reads is the one left by the chunks before it.
    fast_before = torch.cat([prefix.fast_weights[:, :, None], fast_after[:, :, :-1]], dim=2)
    norm_before = torch.cat([prefix.normalizer[:, :, None], norm_after[:, :, :-1]], dim=2)

    lower = torch.ones(C, C, dtype=torch.bool, device=phi_q.device).tril()  # (C, C)
    within = torch.where(lower, qc @ kc.transpose(-1, -2), 0.0)  # (B, H, N, C, C)
    numer = within @ vc + torch.einsum("bhncm,bhnvm->bhncv", qc, fast_before)  # (B, H, N, C, Dv)
    denom = within.sum(dim=-1) + torch.einsum("bhncm,bhnm->bhnc", qc, norm_before)  # (B, H, N, C)
    out = _read_out(numer, denom, eps, normalize).reshape(B, H, N * C, Dv)[:, :, :L]
    return out, LinearState(fast_after[:, :, -1], norm_after[:, :, -1])


def linear_attention_step(
    q_t: torch.Tensor,
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    state: LinearState | None = None,
    *,
    feature_map: FeatureMap = elu_plus_one,
    mask: torch.Tensor | None = None,
    eps: float = 1e-6,
    normalize: bool = True,
) -> tuple[torch.Tensor, LinearState]:
    """One recurrent step of causal linear attention (fast-weight update, then read).

    ``S_t = S_{t-1} + v_t phi(k_t)^T``, ``z_t = z_{t-1} + phi(k_t)``,
    ``out_t = S_t phi(q_t) / (z_t . phi(q_t) + eps)``. Cost and memory do not depend
    on ``t``.

    Args:
        q_t: ``(B, H, D)`` the query of token ``t``.
        k_t: ``(B, H, D)`` its key.
        v_t: ``(B, H, Dv)`` its value.
        state: :class:`LinearState` after tokens ``< t`` (``fast_weights (B, H, Dv, M)``,
            ``normalizer (B, H, M)``), or None before the first token.
        feature_map: ``phi``, as in :func:`linear_attention`.
        mask: ``(B,)`` bool, True = real token; a padded token leaves the state as it
            was (its output still reads the state).
        eps, normalize: as in :func:`linear_attention`.

    Returns:
        ``(out_t, state)``: ``out_t (B, H, Dv)`` in the input dtype and the new state
        (float32, or float64 for float64 inputs).
    """
    _check_tensors(q_t, k_t, v_t, 3, "(B, H, D) (one token; no length axis)")
    eps = _check_common(feature_map, eps)
    B, H, D = q_t.shape
    Dv = v_t.shape[2]
    if tuple(k_t.shape) != (B, H, D) or tuple(v_t.shape[:2]) != (B, H):
        raise ValueError(f"expected q_t (B, H, D), k_t (B, H, D), v_t (B, H, Dv), got "
                         f"q_t {tuple(q_t.shape)}, k_t {tuple(k_t.shape)}, v_t {tuple(v_t.shape)}")
    _check_mask(mask, (B,), "(B,)")

    acc = compute_dtype(q_t.dtype)
    phi_q = _features(feature_map, q_t.to(acc), "q_t")  # (B, H, M)
    phi_k = _features(feature_map, k_t.to(acc), "k_t")  # (B, H, M)
    value = v_t.to(acc)
    if mask is not None:
        keep = mask[:, None, None]  # (B, 1, 1)
        phi_k = torch.where(keep, phi_k, 0.0)
        value = torch.where(keep, value, 0.0)
    prev = _check_state(state, B, H, Dv, phi_q.shape[-1], acc, q_t.device)

    fast = prev.fast_weights + value[..., :, None] * phi_k[..., None, :]  # (B, H, Dv, M)
    norm = prev.normalizer + phi_k  # (B, H, M)
    numer = torch.einsum("bhvm,bhm->bhv", fast, phi_q)  # (B, H, Dv)
    denom = (norm * phi_q).sum(dim=-1)  # (B, H)
    return _read_out(numer, denom, eps, normalize).to(q_t.dtype), LinearState(fast, norm)
