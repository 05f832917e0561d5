"""Context-parallel training of :class:`~attnkit.models.gpt.GPT`: the sequence dimension
split over the ranks of a process group.

:class:`ContextParallelGPT` runs a GPT's own modules (embedding, blocks, head) on this
rank's shard of every sequence, with the global position of every token (absolute
positions and rotary angles are taken run by run, see
:func:`~attnkit.distributed.layout.segments`) and :func:`ring_attention` in place of the
one-process attention call. Everything but attention acts position by position, so the
logits of the shard are exactly the rows of the one-process logits.

Losses and gradients. :func:`context_parallel_loss` returns this rank's
``(loss_sum, num_tokens)``, the contract of :class:`attnkit.train.trainer.Trainer`'s
``loss_fn``. The full-sequence loss is the sum over ranks, and so is every parameter's
gradient: a rank's backward covers its own tokens' loss (ring attention's backward sends
the key/value gradients to the ranks that own them). Two ways to sum:

* with the Trainer: pass the :class:`ContextParallelGPT` as the model, a ``batch_fn``
  that returns this rank's shard (:func:`shard_batch`) and :func:`context_parallel_loss`
  as ``loss_fn``. The Trainer wraps the model in DDP over all processes, which averages
  the gradients; it then multiplies them by ``world_size / total_tokens`` and all-reduces
  the loss sums and token counts, which is exactly the token-mean over the full sequences.
  With data parallelism as well (``dp x cp`` processes), build one context-parallel
  group per data-parallel replica (``torch.distributed.new_group``), give it to
  :class:`ContextParallelGPT`, and let ``batch_fn`` pick the batch by replica and the
  shard by position in the group: the same arithmetic holds.
* by hand: ``loss_sum / total_tokens`` backward on every rank, then
  :func:`sync_gradients` (a sum over the group) before the optimizer step.

Not supported: dropout inside attention (ring attention has none; configs with
``dropout > 0`` are refused in training mode), KV-cache decoding (generate with the
plain model, ``cp_model.model``).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from attnkit._validate import check_choice
from attnkit.distributed.layout import LAYOUTS, segments, shard, world_and_rank
from attnkit.distributed.ring import ring_attention
from attnkit.models.gpt import GPT
from attnkit.nn._inputs import check_token_ids
from attnkit.train.losses import token_cross_entropy

__all__ = ["ContextParallelGPT", "context_parallel_loss", "shard_batch", "sync_gradients"]


class ContextParallelGPT(nn.Module):
    """A :class:`GPT` run on this rank's shard of every sequence.

    Args:
        model: the GPT (identical on every rank of ``group``; its parameters are shared,
            not copied: ``cp_model.model`` is the plain model for checkpoints and
            generation).
        group: the process group the sequence is split over (None: the default group).
        layout: ``"zigzag"`` (default; balanced causal work) or ``"contiguous"``.

    Example (each rank)::

        cp = ContextParallelGPT(GPT(config), group=cp_group)
        idx, targets = shard_batch(tokens, group=cp_group)      # (B, L / W) each
        loss_sum, count = context_parallel_loss(cp, (idx, targets))
    """

    def __init__(self, model: GPT, *, group: dist.ProcessGroup | None = None,
                 layout: str = "zigzag") -> None:
        super().__init__()
        if not isinstance(model, GPT):
            raise TypeError(f"model must be an attnkit.models.gpt.GPT, got "
                            f"{type(model).__name__}")
        self.model = model
        self.group = group
        self.layout = check_choice(layout, "layout", LAYOUTS)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits of this rank's shard.

        Args:
            idx: ``(B, n)`` long token ids at the global positions
                :func:`~attnkit.distributed.shard_positions` names (``n = L / W``).

        Returns:
            ``(B, n, V)``: rows of the one-process logits of the full ``(B, L)`` sequence.
        """
        config = self.model.config
        check_token_ids(idx, "idx", layout="(B, n)", vocab_size=config.vocab_size,
                        who="ContextParallelGPT")
        world, rank = world_and_rank(self.group)
        length = idx.shape[1] * world
        if length > config.context_len:
            raise ValueError(f"idx: {idx.shape[1]} tokens per rank x {world} ranks = {length} "
                             f"positions, but context_len is {config.context_len}")
        if self.layout == "zigzag" and idx.shape[1] % 2:
            raise ValueError(f"idx: a zigzag shard holds two equal chunks, but it has "
                             f"{idx.shape[1]} tokens (odd)")
        if self.training and config.dropout > 0:
            raise ValueError(f"model: config.dropout = {config.dropout} > 0, but ring attention "
                             f"has no attention dropout; train with dropout=0 or call .eval()")
        runs = segments(length, world, rank, self.layout)
        x = torch.cat([self.model.embed(part, offset=start) for part, (start, _) in
                       zip(_split(idx, runs, dim=1), runs, strict=True)], dim=1)  # (B, n, E)
        for block in self.model.blocks:
            h = self._attend(block.self_attn, block.norm1(x), runs)
            # Blocks built with dropout = 0 may have no dropout module at all.
            x = x + (h if getattr(block, "dropout", None) is None else block.dropout(h))
            if self.model.config.mlp:  # attention-only GPTs (mlp=False) have no ffn
                x = x + block.ffn(block.norm2(x))
        return self.model.lm_head(self.model.norm(x))  # (B, n, V)

    def _attend(self, attn, h: torch.Tensor, runs) -> torch.Tensor:
        """``attn``'s causal self-attention of ``h (B, n, E)`` over the whole sequence."""
        B, n, _ = h.shape
        q = attn.q_proj(h).unflatten(-1, (attn.num_heads, attn.head_dim)).transpose(1, 2)
        k = attn.k_proj(h).unflatten(-1, (attn.num_kv_heads, attn.head_dim)).transpose(1, 2)
        v = attn.v_proj(h).unflatten(-1, (attn.num_kv_heads, attn.head_dim)).transpose(1, 2)
        # q: (B, Hq, n, Dh); k, v: (B, Hkv, n, Dh)
        if attn.q_norm is not None:
            q, k = attn.q_norm(q), attn.k_norm(k)
        if attn.rotary is not None:
            q, k = (torch.cat([attn.rotary(part, start) for part, (start, _) in
                               zip(_split(t, runs, dim=2), runs, strict=True)], dim=2)
                    for t in (q, k))
        out, _ = ring_attention(q, k, v, causal=True, group=self.group, layout=self.layout)
        out = out.transpose(1, 2).reshape(B, n, attn.num_heads * attn.head_dim)  # (B, n, E)
        return attn.out_proj(out)


def _split(x: torch.Tensor, runs, dim: int) -> list[torch.Tensor]:
    return list(torch.split(x, [length for _, length in runs], dim=dim))


def shard_batch(tokens: torch.Tensor, *, layout: str = "zigzag",
                group: dist.ProcessGroup | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's inputs and next-token targets from full sequences.

    Args:
        tokens: ``(B, L + 1)`` long token ids, identical on every rank of ``group``.
        layout, group: as :class:`ContextParallelGPT`.

    Returns:
        ``(idx, targets)``, both ``(B, L / W)``: ``tokens[:, :-1]`` and ``tokens[:, 1:]``
        sharded with :func:`~attnkit.distributed.shard`.
    """
    check_token_ids(tokens, "tokens", layout="(B, L + 1)", who="shard_batch")
    return (shard(tokens[:, :-1], 1, layout, group), shard(tokens[:, 1:], 1, layout, group))


def context_parallel_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], *,
                          pad_id: int | None = None, label_smoothing: float = 0.0,
                          ) -> tuple[torch.Tensor, int]:
    """This rank's summed next-token loss: a Trainer ``loss_fn``.

    Args:
        model: a :class:`ContextParallelGPT` (or the DDP wrapping one).
        batch: ``(idx, targets)``, both ``(B, n)`` long, from :func:`shard_batch`.
        pad_id, label_smoothing: as :func:`attnkit.train.losses.token_cross_entropy`.

    Returns:
        ``(loss_sum, num_tokens)`` over this rank's tokens. Summed over the ranks they give
        the one-process ``(loss_sum, num_tokens)`` of the full sequences.
    """
    idx, targets = batch
    logits = model(idx)  # (B, n, V)
    return token_cross_entropy(logits, targets, pad_id=pad_id, label_smoothing=label_smoothing)


def sync_gradients(module: nn.Module, group: dist.ProcessGroup | None = None) -> None:
    """Sum every parameter's gradient over ``group``, in place (a collective).

    For training without DDP: after each rank's backward of its share of the loss, the
    sum is the full-sequence gradient. A parameter without a gradient counts as zeros.
    """
    world_and_rank(group)
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])  # one collective, not one per tensor
    dist.all_reduce(flat, group=group)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()
