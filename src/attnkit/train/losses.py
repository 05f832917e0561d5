"""Token-level cross-entropy with label smoothing, and ready-made ``loss_fn`` builders.

Label smoothing follows "Rethinking the Inception Architecture for Computer Vision"
(Szegedy et al., 2015, arXiv:1512.00567, section 7) in the form the Transformer used it
(Vaswani et al., 2017, arXiv:1706.03762): the target distribution is
``(1 - eps) * one_hot(y) + eps / V`` over all ``V`` classes (the same definition as
``torch.nn.functional.cross_entropy(label_smoothing=eps)``). Padding positions contribute
nothing and are not counted.

Every loss here returns ``(loss_sum, num_tokens)``: the *sum* over real tokens and how many
there were. The trainer divides by the token count of the whole optimizer step (all
micro-batches, all processes), so batches with different amounts of padding are weighted
by their tokens, not averaged per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from attnkit._validate import check_float, check_int

__all__ = ["token_cross_entropy", "seq2seq_loss_fn", "lm_loss_fn"]

LossFn = Callable[[torch.nn.Module, Any], tuple[torch.Tensor, int]]


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, *, pad_id: int | None = 0,
                        label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the non-pad tokens.

    Args:
        logits: ``(..., V)`` float scores; computed in float32 when given in half precision
            (float64 stays float64).
        targets: ``(...)`` long class ids, same leading shape as ``logits``.
        pad_id: target id to ignore (no loss, not counted); ``None`` counts every position.
        label_smoothing: ``eps`` in ``[0, 1)``.

    Returns:
        ``(loss_sum, num_tokens)``: a scalar tensor (float32, or float64 for float64 logits)
        and the number of counted targets as a Python int.
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        received = logits.dtype if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TypeError(f"token_cross_entropy: logits must be a floating-point tensor (..., V), "
                        f"got {received}")
    if not isinstance(targets, torch.Tensor) or targets.dtype not in (torch.int64, torch.int32):
        received = targets.dtype if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise TypeError(f"token_cross_entropy: targets must be an int64 or int32 tensor (...) "
                        f"of ids, got {received}")
    if logits.dim() < 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(f"token_cross_entropy: logits (..., V) {tuple(logits.shape)} and targets "
                         f"(...) {tuple(targets.shape)} must agree on the leading dims")
    _check_options(pad_id, label_smoothing)
    compute_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    flat_logits = logits.reshape(-1, logits.shape[-1]).to(compute_dtype)  # (N, V)
    flat_targets = targets.reshape(-1).long()  # (N,)
    keep = (torch.ones_like(flat_targets, dtype=torch.bool) if pad_id is None
            else flat_targets != pad_id)  # (N,)
    counted = flat_targets[keep]
    vocab = logits.shape[-1]
    if counted.numel() and (int(counted.min()) < 0 or int(counted.max()) >= vocab):
        raise ValueError(f"token_cross_entropy: targets must lie in [0, V = {vocab}) (or be "
                         f"pad_id={pad_id}), got values in [{int(counted.min())}, "
                         f"{int(counted.max())}]")
    # One fused kernel (log-softmax, the target's term and the smoothing term) and its
    # fused backward: far cheaper on CPU than log_softmax + gather + mean as separate ops,
    # whose backward materializes several (N, V) tensors. Pad positions (ignore_index)
    # count in neither term; -100 stands for "no pad" (never a valid id, see the check).
    loss_sum = F.cross_entropy(flat_logits, flat_targets,
                               ignore_index=-100 if pad_id is None else pad_id,
                               reduction="sum", label_smoothing=label_smoothing)
    return loss_sum, int(keep.sum())


def _check_options(pad_id: object, label_smoothing: object) -> None:
    if pad_id is not None:
        check_int(pad_id, "pad_id (an int or None)", owner="token_cross_entropy")
    check_float(label_smoothing, "label_smoothing", low=0.0, high=1.0, high_open=True,
                owner="token_cross_entropy")


def _field(batch: Any, name: str) -> Any:
    if isinstance(batch, Mapping):
        if name not in batch:
            raise KeyError(f"seq2seq batch has no {name!r}; expected keys "
                           f"src, src_lengths, tgt_in, tgt_out, got {sorted(batch)}")
        return batch[name]
    if not hasattr(batch, name):
        raise TypeError(f"seq2seq batch must be a mapping or have attribute {name!r}, "
                        f"got {type(batch).__name__}")
    return getattr(batch, name)


def seq2seq_loss_fn(*, pad_id: int = 0, label_smoothing: float = 0.0) -> LossFn:
    """``loss_fn(model, batch)`` for encoder-decoder models (the seq2seq protocol).

    The batch is a mapping (or an object with attributes) holding ``src (B, S)``,
    ``src_lengths (B,)``, ``tgt_in (B, T)`` and ``tgt_out (B, T)``; the model is called as
    ``model(src, src_lengths, tgt_in) -> logits (B, T, V)`` and scored against ``tgt_out``.
    """
    _check_options(pad_id, label_smoothing)  # now, not at step 1

    def loss_fn(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        logits = model(_field(batch, "src"), _field(batch, "src_lengths"),
                       _field(batch, "tgt_in"))  # (B, T, V)
        return token_cross_entropy(logits, _field(batch, "tgt_out"), pad_id=pad_id,
                                   label_smoothing=label_smoothing)

    return loss_fn


def lm_loss_fn(*, pad_id: int | None = None, label_smoothing: float = 0.0) -> LossFn:
    """``loss_fn(model, batch)`` for next-token language models (``model(idx) -> (B, T, V)``).

    The batch is either a ``(B, T + 1)`` long tensor of tokens (inputs are ``[:, :-1]``,
    targets ``[:, 1:]``) or a pair ``(inputs (B, T), targets (B, T))``. ``pad_id`` targets are
    ignored (``None``: none are).
    """
    _check_options(pad_id, label_smoothing)

    def loss_fn(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        if isinstance(batch, torch.Tensor):
            if batch.dim() != 2 or batch.shape[1] < 2:
                raise ValueError(f"lm batch tensor must be (B, T + 1) with T >= 1, got shape "
                                 f"{tuple(batch.shape)}")
            inputs, targets = batch[:, :-1], batch[:, 1:]  # (B, T), (B, T)
        elif isinstance(batch, (tuple, list)) and len(batch) == 2:
            inputs, targets = batch
        else:
            raise TypeError(f"lm batch must be a (B, T + 1) tensor or a pair (inputs, targets), "
                            f"got {type(batch).__name__}")
        logits = model(inputs)  # (B, T, V)
        return token_cross_entropy(logits, targets, pad_id=pad_id,
                                   label_smoothing=label_smoothing)

    return loss_fn
