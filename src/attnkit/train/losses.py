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
from attnkit.kernels import cpu_ext

__all__ = ["token_cross_entropy", "linear_cross_entropy", "seq2seq_loss_fn", "lm_loss_fn"]

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


def linear_cross_entropy(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         targets: torch.Tensor, *, pad_id: int | None = 0,
                         label_smoothing: float = 0.0, chunk_rows: int = 512,
                         ) -> tuple[torch.Tensor, int]:
    """:func:`token_cross_entropy` of ``features @ weight.T + bias``, without the logits.

    The output layer and the loss, fused by rows: ``chunk_rows`` rows of logits at a time
    (512 x 4,000 floats = 8 MB, which stays in cache), each chunk's log-sum-exp, loss
    terms and, when gradients are recorded, its gradients (``softmax - target
    distribution``, then ``d features`` and the weight's and bias's sums) before the next
    chunk. The ``(N, V)`` logits, their log-softmax and their gradient never exist whole,
    and backward only scales the saved gradients. On CPUs each chunk's elementwise work
    (log-sum-exp, loss terms, the logits' gradient, the bias's sum) is one compiled pass
    per row (:mod:`attnkit.kernels.cpu_ext`), PyTorch operations otherwise. The same sums as
    ``token_cross_entropy(F.linear(features, weight, bias), ...)`` in another order: equal
    to rounding. No double backward.

    Args:
        features: ``(..., H)`` float32 or float64 (the output layer's input).
        weight: ``(V, H)``; bias: ``(V,)`` or None.
        targets: ``(...)`` long ids (leading shape of ``features``).
        pad_id, label_smoothing: as :func:`token_cross_entropy`.
        chunk_rows: rows per chunk, >= 1.

    Returns:
        ``(loss_sum, num_tokens)`` as :func:`token_cross_entropy`.
    """
    for name, tensor in (("features", features), ("weight", weight)):
        if not isinstance(tensor, torch.Tensor) or tensor.dtype not in (torch.float32,
                                                                        torch.float64):
            received = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise TypeError(f"linear_cross_entropy: {name} must be a float32 or float64 "
                            f"tensor, got {received}")
    if weight.dim() != 2 or features.dim() < 1 or features.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear_cross_entropy: features (..., H) {tuple(features.shape)} and "
                         f"weight (V, H) {tuple(weight.shape)} disagree")
    if bias is not None and (not isinstance(bias, torch.Tensor)
                             or bias.shape != (weight.shape[0],)):
        raise ValueError(f"linear_cross_entropy: bias must be None or a (V,) = "
                         f"({weight.shape[0]},) tensor, got "
                         f"{tuple(bias.shape) if isinstance(bias, torch.Tensor) else bias!r}")
    if not isinstance(targets, torch.Tensor) or targets.dtype not in (torch.int64, torch.int32):
        received = targets.dtype if isinstance(targets, torch.Tensor) else type(targets).__name__
        raise TypeError(f"linear_cross_entropy: targets must be an int64 or int32 tensor of "
                        f"ids, got {received}")
    if features.shape[:-1] != targets.shape:
        raise ValueError(f"linear_cross_entropy: features (..., H) {tuple(features.shape)} and "
                         f"targets (...) {tuple(targets.shape)} must agree on the leading dims")
    _check_options(pad_id, label_smoothing)
    check_int(chunk_rows, "chunk_rows", minimum=1, owner="linear_cross_entropy")
    flat_targets = targets.reshape(-1).long()
    keep = (torch.ones_like(flat_targets, dtype=torch.bool) if pad_id is None
            else flat_targets != pad_id)
    counted = flat_targets[keep]
    vocab = weight.shape[0]
    if counted.numel() and (int(counted.min()) < 0 or int(counted.max()) >= vocab):
        raise ValueError(f"linear_cross_entropy: targets must lie in [0, V = {vocab}) (or be "
                         f"pad_id={pad_id}), got values in [{int(counted.min())}, "
                         f"{int(counted.max())}]")
    dtype = torch.promote_types(features.dtype, weight.dtype)
    bias = weight.new_zeros(vocab) if bias is None else bias
    # decided here: inside an autograd Function's forward gradients are never enabled
    grads = torch.is_grad_enabled() and any(t.requires_grad for t in (features, weight, bias))
    loss = _LinearCrossEntropy.apply(features.reshape(-1, features.shape[-1]).to(dtype),
                                     weight.to(dtype), bias.to(dtype),
                                     flat_targets.masked_fill(~keep, 0), keep,
                                     float(label_smoothing), chunk_rows, grads)
    return loss, int(keep.sum())


class _LinearCrossEntropy(torch.autograd.Function):
    """Forward (loss and, if needed, gradients, chunk by chunk) of linear_cross_entropy."""

    @staticmethod
    def forward(ctx, features, weight, bias, targets, keep, smoothing, chunk_rows, grads):
        rows, vocab = features.shape[0], weight.shape[0]
        total = features.new_zeros(())
        if grads:
            grad_features = torch.empty_like(features)
            grad_weight, grad_bias = torch.zeros_like(weight), torch.zeros_like(bias)
        weight_t = weight.t()
        kernels = cpu_ext.for_tensor(features)
        bias = bias.contiguous()
        with torch.no_grad():
            if smoothing and not kernels:  # a row's sum of logits: x . sum_v(W_v) + sum(b)
                weight_sum, bias_sum = weight.sum(0), bias.sum()
            for start in range(0, rows, chunk_rows):
                stop = min(start + chunk_rows, rows)
                x, target, kept = features[start:stop], targets[start:stop], keep[start:stop]
                if kernels:  # the same terms, in place, three passes per row (cpu_ext), which
                    # add the bias too: addmm would first copy it into every row of the chunk
                    logits = torch.mm(x, weight_t)  # (C, V)
                    row_loss = logits.new_empty(stop - start)
                    kernels.cross_entropy_chunk(logits, bias, target, kept, smoothing, grads,
                                                row_loss, grad_bias if grads else row_loss)
                    total += row_loss.sum()
                    if grads:
                        torch.mm(logits, weight, out=grad_features[start:stop])
                        grad_weight.addmm_(logits.t(), x)
                    continue
                logits = torch.addmm(bias, x, weight_t)  # (C, V)
                # each row's target logit, by flat index (gather along dim 1 is far slower)
                flat = torch.arange(0, (stop - start) * vocab, vocab,
                                    device=target.device).add_(target)
                chosen = logits.view(-1).index_select(0, flat)
                # log-sum-exp with exp(logits - max) kept in place: softmax * sums
                top = logits.amax(-1, keepdim=True)  # (C, 1)
                sums = logits.sub_(top).exp_().sum(-1)  # (C,)
                row_loss = top[:, 0] + sums.log() - (1 - smoothing) * chosen
                if smoothing:
                    row_loss -= smoothing / vocab * (x @ weight_sum + bias_sum)
                total += row_loss[kept].sum()
                if not grads:
                    continue
                # d loss / d logits = softmax - ((1 - eps) one_hot + eps / V), 0 on pads:
                # exp(logits - max) / sums - eps / V on kept rows, in place
                weight_row = kept.to(dtype=logits.dtype)
                grad = logits.mul_((weight_row / sums)[:, None])
                if smoothing:
                    grad.sub_((smoothing / vocab) * weight_row[:, None])
                grad.view(-1).index_add_(0, flat, (smoothing - 1) * weight_row)
                torch.mm(grad, weight, out=grad_features[start:stop])
                grad_weight.addmm_(grad.t(), x)
                grad_bias += grad.sum(0)
        if grads:
            ctx.save_for_backward(grad_features, grad_weight, grad_bias)
        else:
            ctx.mark_non_differentiable(total)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        grad_features, grad_weight, grad_bias = ctx.saved_tensors
        return (grad_features * grad_loss, grad_weight * grad_loss, grad_bias * grad_loss,
                None, None, None, None, None)


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

    A model with ``output_features(src, src_lengths, tgt_in)`` (the output layer's input
    ``(B, T, H)``, or None where it has none) and an ``nn.Linear`` ``generator`` is scored
    with :func:`linear_cross_entropy` instead while it trains on a CPU outside autocast:
    the same loss without the ``(B, T, V)`` logits.
    """
    _check_options(pad_id, label_smoothing)  # now, not at step 1

    def loss_fn(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        src, lengths, tgt_in = (_field(batch, "src"), _field(batch, "src_lengths"),
                                _field(batch, "tgt_in"))
        if _fused_output(model, tgt_in):
            features = model.output_features(src, lengths, tgt_in)  # (B, T, H) or None
            if features is not None:
                generator = model.generator
                return linear_cross_entropy(features, generator.weight, generator.bias,
                                            _field(batch, "tgt_out"), pad_id=pad_id,
                                            label_smoothing=label_smoothing)
        logits = model(src, lengths, tgt_in)  # (B, T, V)
        return token_cross_entropy(logits, _field(batch, "tgt_out"), pad_id=pad_id,
                                   label_smoothing=label_smoothing)

    return loss_fn


def _fused_output(model: torch.nn.Module, tokens: torch.Tensor) -> bool:
    """Whether seq2seq_loss_fn scores ``model`` with linear_cross_entropy: it offers
    ``output_features`` and a plain linear ``generator`` (unwatched by hooks), gradients are
    recorded, on a CPU, outside autocast."""
    from torch.nn.modules import module as torch_module

    generator = getattr(model, "generator", None)
    return (callable(getattr(model, "output_features", None))
            and type(generator) is torch.nn.Linear and torch.is_grad_enabled()
            and tokens.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
            and generator.weight.dtype in (torch.float32, torch.float64)
            and not (generator._forward_hooks or generator._forward_pre_hooks
                     or torch_module._global_forward_hooks
                     or torch_module._global_forward_pre_hooks))


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
