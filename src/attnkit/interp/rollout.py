"""Attention rollout: how much each output token draws from each input token.

Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", arXiv:2005.00928.
Each layer's attention is fused over heads, the residual connection is modelled by
mixing in the identity, rows are renormalized, and the layers are multiplied from the
first to the last::

    A_l^ = normalize_rows((1 - r) * fuse_heads(W_l) + r * I)     (r = residual, 0.5 in the paper)
    rollout = A_L^ @ ... @ A_2^ @ A_1^

``rollout[b, i, j]`` is the share of input token ``j`` in the last layer's token ``i``
(for a ViT, row 0 is the class token). With ``residual=0`` it is the plain product of
the attention matrices.

Deviations: the paper averages heads; ``head_fusion="max"``/``"min"`` (as used in some
later rollout code for sharper maps) are offered beside the mean. A row with nothing to
attend to (all-zero weights, attnkit's convention for fully masked rows) keeps only its
residual share, i.e. becomes the identity row after renormalization (with
``residual=0`` it stays zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from attnkit._validate import check_choice, check_float, check_int

__all__ = ["attention_rollout", "class_token_rollout", "HEAD_FUSIONS"]

HEAD_FUSIONS = ("mean", "max", "min")


def _fuse(layer: torch.Tensor, head_fusion: str) -> torch.Tensor:
    """``(B, H, L, L) -> (B, L, L)``."""
    if head_fusion == "mean":
        return layer.mean(dim=1)
    return layer.amax(dim=1) if head_fusion == "max" else layer.amin(dim=1)


def attention_rollout(weights: Sequence[torch.Tensor] | torch.Tensor, *,
                      residual: float = 0.5, head_fusion: str = "mean") -> torch.Tensor:
    """Roll the attention of successive self-attention layers out into one matrix.

    Args:
        weights: the attention weights of each layer, in forward order: a sequence of
            ``(B, H, L, L)`` tensors (``H`` may differ between layers) or one tensor
            ``(num_layers, B, H, L, L)``. Rows are expected to sum to 1 (or 0 for a row
            with nothing to attend to), as :func:`attnkit.interp.capture` records them.
        residual: ``r`` in ``[0, 1]``, the weight of the identity (the residual path).
        head_fusion: ``"mean"`` (the paper), ``"max"`` or ``"min"`` over heads.

    Returns:
        ``(B, L, L)`` in float32 (float64 for float64 input); each row sums to 1 unless
        it is zero in every layer's product (see the module docstring).

    Example:
        >>> eye = torch.eye(3).expand(1, 2, 3, 3)
        >>> attention_rollout([eye, eye]).equal(torch.eye(3)[None])
        True
    """
    residual = check_float(residual, "residual", low=0.0, high=1.0)
    check_choice(head_fusion, "head_fusion", HEAD_FUSIONS)
    if isinstance(weights, torch.Tensor):
        if weights.dim() != 5:
            raise ValueError(f"weights as one tensor must be (num_layers, B, H, L, L), got "
                             f"shape {tuple(weights.shape)}")
        layers = list(weights.unbind(0))
    elif isinstance(weights, (list, tuple)):
        layers = list(weights)
    else:
        raise TypeError(f"weights must be a sequence of (B, H, L, L) tensors or a tensor, got "
                        f"{type(weights).__name__}")
    if not layers:
        raise ValueError("weights must hold at least one layer")
    first = layers[0]
    for index, layer in enumerate(layers):
        if not isinstance(layer, torch.Tensor):
            raise TypeError(f"weights[{index}] must be a tensor, got {type(layer).__name__}")
        if not layer.is_floating_point():
            raise TypeError(f"weights[{index}] must be floating point, got {layer.dtype}")
        if layer.dim() != 4 or layer.shape[-1] != layer.shape[-2]:
            raise ValueError(f"weights[{index}] must be (B, H, L, L) self-attention weights, "
                             f"got shape {tuple(layer.shape)}")
        if layer.shape[0] != first.shape[0] or layer.shape[-1] != first.shape[-1]:
            raise ValueError(f"weights[{index}] has shape {tuple(layer.shape)}, but "
                             f"weights[0] has (B, L) = ({first.shape[0]}, {first.shape[-1]})")
    dtype = torch.float64 if first.dtype == torch.float64 else torch.float32
    length = first.shape[-1]
    eye = torch.eye(length, dtype=dtype, device=first.device)  # (L, L)
    rollout = None
    for layer in layers:
        mixed = (1 - residual) * _fuse(layer.to(dtype), head_fusion) + residual * eye
        total = mixed.sum(dim=-1, keepdim=True)  # (B, L, 1)
        mixed = mixed / torch.where(total > 0, total, torch.ones_like(total))  # (B, L, L)
        rollout = mixed if rollout is None else mixed @ rollout  # (B, L, L)
    return rollout


@torch.no_grad()
def class_token_rollout(model: torch.nn.Module, images: torch.Tensor, *, grid: int,
                        residual: float = 0.5,
                        head_fusion: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """The class token's attention rollout over the patches of a ViT-style model.

    The weights of every attention module of ``model`` are captured with
    :func:`attnkit.interp.capture` (exact, from whatever backend runs) during one forward,
    then rolled out with :func:`attention_rollout` (``residual``, ``head_fusion`` as there).
    Token 0 must be the class token and tokens ``1 .. grid**2`` the patches in row-major
    order (as :class:`attnkit.models.vision.VisionTransformer` lays them out).

    Args:
        model: called as ``model(images)``; its attention modules are self-attention over
            ``1 + grid**2`` tokens.
        images: ``(B, C, S, S)``.
        grid: patches per side.

    Returns:
        ``(logits, maps (B, grid, grid))``: the model's output and, per image, the class
        token's rollout row without its own entry, renormalized to sum to 1.
    """
    from attnkit.interp.capture import capture

    check_int(grid, "grid", minimum=1)
    with capture(model, store=("weights",)) as cap:
        logits = model(images)
    layers = [cap.weights(name) for name in cap.names]  # each (B, H, T, T)
    if not layers:
        raise ValueError("model: no attnkit attention module ran, nothing to roll out")
    if layers[0].shape[-1] != grid * grid + 1:
        raise ValueError(f"grid: {grid} x {grid} patches and a class token make "
                         f"{grid * grid + 1} tokens, the model attends over "
                         f"{layers[0].shape[-1]}")
    rolled = attention_rollout(layers, residual=residual, head_fusion=head_fusion)
    cls_row = rolled[:, 0, 1:]  # (B, grid**2)
    cls_row = cls_row / cls_row.sum(-1, keepdim=True).clamp_min(1e-12)
    return logits, cls_row.view(-1, grid, grid)  # (B, grid, grid)
