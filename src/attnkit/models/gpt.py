"""GPT: a decoder-only Transformer language model.

Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training"
(GPT) and Radford et al. 2019, "Language Models are Unsupervised Multitask
Learners" (GPT-2; no arXiv id for either). The layout is GPT-2's: pre-norm blocks
(causal self-attention, GELU MLP), a final LayerNorm, learned absolute positions
and an output head tied to the token embedding.

Options beyond GPT-2: grouped-query attention (``num_kv_heads``), sinusoidal or
rotary positions, no biases (``bias=False``), an untied head, and attention-only blocks
(``mlp=False``: no MLP and no second LayerNorm, the attention-only transformers of Elhage
et al. 2021, "A Mathematical Framework for Transformer Circuits", transformer-circuits.pub,
and Olsson et al. 2022, arXiv:2209.11895).

Initialization (GPT-2): every linear and embedding weight ``N(0, 0.02^2)``, the
residual output projections (attention ``out_proj`` and MLP ``proj``) ``N(0,
(0.02 / sqrt(2 num_layers))^2)`` so that the residual stream's variance does not
grow with depth; biases zero, LayerNorms ones/zeros. ``init_std`` replaces 0.02 (in both).
0.02 was chosen for GPT-2's width 768; at small widths the initial query-key products
(which scale with ``init_std^2 x d_model``) are near zero and every pattern starts almost
uniform. TransformerLens initializes at ``0.8 / sqrt(d_model)``. Neither is better
everywhere: on ``attnkit induction``'s data (d_model 128) 0.0707 lowered the loss sooner
but formed a layer-0 previous-token head more slowly than 0.02
(``benchmarks/results/induction/init-std/``).

Context length: :meth:`GPT.generate` with ``use_cache=True`` raises ValueError
when the prompt plus the new tokens would need more than ``context_len``
positions; with ``use_cache=False`` it crops the input to the last
``context_len`` tokens at every step (a sliding window, as nanoGPT).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from attnkit._validate import check_bool, check_float, check_int
from attnkit.models._blocks import (
    EncoderLayer,
    TokenEmbedding,
    check_common,
    make_rotary,
    optional_dropout,
)
from attnkit.nn._inputs import check_token_ids
from attnkit.nn.kv_cache import KVCache
from attnkit.nn.multihead import MultiHeadAttention
from attnkit.nn.positional import RotaryEmbedding

__all__ = ["GPTConfig", "GPT", "AttentionOnlyBlock"]

_WHO = "GPTConfig"
DEFAULT_INIT_STD = 0.02  # GPT-2's, chosen for widths near 768


@dataclass
class GPTConfig:
    """Hyper-parameters of :class:`GPT` (defaults: GPT-2 small, 124M parameters with
    a 50257-token vocabulary). Invalid values raise ValueError/TypeError naming the field."""

    vocab_size: int  # token ids in [0, vocab_size)
    context_len: int = 1024  # most positions one sequence may use
    num_layers: int = 12  # Transformer blocks
    num_heads: int = 12  # query heads; must divide d_model
    num_kv_heads: int | None = None  # key/value heads (None: num_heads; fewer: GQA/MQA)
    d_model: int = 768  # model width E
    ffn_dim: int | None = None  # MLP hidden width (None: 4 * d_model)
    dropout: float = 0.0  # on embeddings, attention weights and block outputs
    bias: bool = True  # biases in linear layers and LayerNorms
    positional: str = "learned"  # "learned" (GPT-2) | "sinusoidal" | "rotary"
    tie_embeddings: bool = True  # output head shares the token embedding matrix
    mlp: bool = True  # an MLP in every block (False: attention-only; ffn_dim is unused)
    rotary_base: float = 10000.0  # frequency base of rotary positions (Llama 3: 500000)
    init_std: float | None = None  # weights' initial std (None: GPT-2's 0.02)

    def __post_init__(self) -> None:
        for field in ("vocab_size", "context_len", "num_layers"):
            check_int(getattr(self, field), field, minimum=1, owner=_WHO)
        if self.ffn_dim is None:
            self.ffn_dim = 4 * self.d_model if isinstance(self.d_model, int) else self.d_model
        check_common(_WHO, self)
        for field in ("bias", "tie_embeddings", "mlp"):
            check_bool(getattr(self, field), field, owner=_WHO)
        if self.init_std is not None:
            self.init_std = check_float(self.init_std, "init_std", low=0.0, low_open=True,
                                        high=10.0, owner=_WHO)

    def to_dict(self) -> dict:
        """JSON-able fields (for checkpoints); ``GPTConfig(**d)`` rebuilds it."""
        return dataclasses.asdict(self)


class AttentionOnlyBlock(nn.Module):
    """A pre-norm block without MLP, ``x + dropout(self_attn(norm1(x)))``: GPT's block for
    ``mlp=False``. Its modules carry :class:`~attnkit.models._blocks.EncoderLayer`'s names
    (``self_attn``, ``norm1``, ``dropout``), so captured layers keep their paths.

    Args:
        d_model, num_heads, num_kv_heads, bias, rotary: as :class:`MultiHeadAttention`.
        dropout: on the attention weights and on the block's output (0: no ``dropout``
            submodule, see :func:`~attnkit.models._blocks.optional_dropout`).
    """

    def __init__(self, d_model: int, num_heads: int, *, num_kv_heads: int | None = None,
                 dropout: float = 0.0, bias: bool = True,
                 rotary: RotaryEmbedding | None = None) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, num_kv_heads=num_kv_heads,
                                            bias=bias, dropout=dropout, rotary=rotary)
        self.norm1 = nn.LayerNorm(d_model, bias=bias)
        self.dropout = optional_dropout(dropout)

    def forward(self, x: torch.Tensor, *, mask=None, causal: bool | None = None,
                kv_cache: KVCache | None = None) -> torch.Tensor:
        """``x (B, L, E) -> (B, L, E)``; ``mask``, ``causal``, ``kv_cache`` as
        :meth:`EncoderLayer.forward`."""
        modules = self._modules
        out = modules["self_attn"](modules["norm1"](x), mask=mask, causal=causal,
                                   kv_cache=kv_cache)[0]
        return x + (out if self.dropout is None else self.dropout(out))


class GPT(nn.Module):
    """Decoder-only language model: ``idx (B, T)`` -> next-token logits ``(B, T, V)``.

    Example:
        >>> import torch
        >>> from attnkit.models.gpt import GPT, GPTConfig
        >>> model = GPT(GPTConfig(vocab_size=50, context_len=16, num_layers=2, num_heads=2,
        ...                       d_model=32)).eval()
        >>> out = model.generate(torch.tensor([[1, 2, 3]]), 5, top_k=1)
        >>> out.shape
        torch.Size([1, 8])
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = c = config
        self.embed = TokenEmbedding(c.vocab_size, c.d_model, positional=c.positional,
                                    max_len=c.context_len, dropout=c.dropout)
        rotary = make_rotary(c.positional, c.d_model // c.num_heads, c.rotary_base)
        heads = dict(num_kv_heads=c.num_kv_heads, dropout=c.dropout, bias=c.bias,
                     rotary=rotary)
        self.blocks = nn.ModuleList(
            EncoderLayer(c.d_model, c.num_heads, c.ffn_dim, norm_first=True, activation="gelu",
                         **heads) if c.mlp else AttentionOnlyBlock(c.d_model, c.num_heads, **heads)
            for _ in range(c.num_layers))
        self.norm = nn.LayerNorm(c.d_model, bias=c.bias)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self._init_weights()
        if c.tie_embeddings:
            self.lm_head.weight = self.embed.token.weight

    def _init_weights(self) -> None:
        std = DEFAULT_INIT_STD if self.config.init_std is None else self.config.init_std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        residual_std = std / math.sqrt(2 * self.config.num_layers)
        for block in self.blocks:
            nn.init.normal_(block.self_attn.out_proj.weight, std=residual_std)
            if self.config.mlp:
                nn.init.normal_(block.ffn.proj.weight, std=residual_std)

    def make_kv_caches(self) -> list[KVCache]:
        """Empty caches for incremental decoding, one per block."""
        return [KVCache() for _ in self.blocks]

    def forward(self, idx: torch.Tensor, *, kv_caches: list[KVCache] | None = None
                ) -> torch.Tensor:
        """Next-token logits.

        Args:
            idx: ``(B, T)`` long token ids.
            kv_caches: None, or one :class:`KVCache` per block (see
                :meth:`make_kv_caches`) holding the ``P`` earlier tokens of every row;
                ``idx`` then holds positions ``P .. P + T - 1`` and the caches grow by
                ``T``. Use under ``torch.no_grad()``.

        Returns:
            logits ``(B, T, V)``; position ``t`` depends on tokens ``<= t`` only.
        """
        check_token_ids(idx, "idx", layout="(B, T)", vocab_size=self.config.vocab_size,
                        who="GPT")
        if kv_caches is not None:
            if not isinstance(kv_caches, (list, tuple)) or len(kv_caches) != len(self.blocks) \
                    or not all(isinstance(cache, KVCache) for cache in kv_caches):
                raise TypeError(f"kv_caches must be a list of {len(self.blocks)} KVCache "
                                f"(one per block; see make_kv_caches()), got {kv_caches!r}")
        past = 0 if kv_caches is None else kv_caches[0].length
        if past + idx.shape[1] > self.config.context_len:
            raise ValueError(f"idx needs positions {past}..{past + idx.shape[1] - 1} (idx has "
                             f"{idx.shape[1]} tokens after {past} cached) but context_len is "
                             f"{self.config.context_len}")
        return self._forward(idx, kv_caches, past)

    def _forward(self, idx: torch.Tensor, kv_caches: list[KVCache] | None,
                 past: int) -> torch.Tensor:
        modules = self._modules  # not self.<name>: nn.Module.__getattr__ is a Python call
        x = modules["embed"](idx, offset=past)  # (B, T, E)
        for i, block in enumerate(modules["blocks"]):
            x = block(x, causal=True, kv_cache=None if kv_caches is None else kv_caches[i])
        return modules["lm_head"](modules["norm"](x))  # (B, T, V)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None,
                 use_cache: bool = True) -> torch.Tensor:
        """Sample ``max_new_tokens`` continuations of every prompt row.

        The module's mode is left as it is: call ``model.eval()`` first, or dropout
        stays active.

        Args:
            idx: ``(B, T)`` long prompt.
            max_new_tokens: tokens to append (>= 0).
            temperature: logits are divided by it before sampling; 0 means greedy
                (argmax), as does ``top_k=1``.
            top_k: sample among the ``top_k`` most likely tokens only (None: all).
            generator: a ``torch.Generator`` (on the model's device) for reproducible
                sampling.
            use_cache: decode incrementally with KV caches (one position per new
                token). Then ``T + max_new_tokens - 1 <= context_len`` is required
                (ValueError otherwise). Without a cache the whole sequence is
                recomputed per token and cropped to its last ``context_len`` tokens.

        Returns:
            ``(B, T + max_new_tokens)`` long: the prompt followed by the new tokens.
        """
        check_token_ids(idx, "idx", layout="(B, T)", vocab_size=self.config.vocab_size,
                        who="GPT")
        check_int(max_new_tokens, "max_new_tokens", minimum=0, owner="GPT.generate")
        temperature = check_float(temperature, "temperature", low=0.0, owner="GPT.generate")
        if top_k is not None:
            check_int(top_k, "top_k (None or an int)", minimum=1, owner="GPT.generate")
        check_bool(use_cache, "use_cache", owner="GPT.generate")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got "
                            f"{type(generator).__name__}")
        context = self.config.context_len
        if use_cache and idx.shape[-1] + max_new_tokens - 1 > context:
            raise ValueError(f"generate(use_cache=True) needs {idx.shape[-1]} prompt + "
                             f"{max_new_tokens} new tokens - 1 = "
                             f"{idx.shape[-1] + max_new_tokens - 1} positions but context_len "
                             f"is {context}; shorten the request or pass use_cache=False "
                             f"(crops to the last {context} tokens)")
        if max_new_tokens == 0:
            return idx
        caches = self.make_kv_caches() if use_cache else None
        logits = self.forward(idx if use_cache else idx[:, -context:], kv_caches=caches)
        for step in range(max_new_tokens):
            next_token = self._sample(logits[:, -1], temperature, top_k, generator)  # (B, 1)
            idx = torch.cat([idx, next_token], dim=1)  # (B, T + step + 1)
            if step == max_new_tokens - 1:
                break
            if use_cache:
                logits = self._forward(next_token, caches, caches[0].length)
            else:
                logits = self._forward(idx[:, -context:], None, 0)
        return idx

    @staticmethod
    def _sample(logits: torch.Tensor, temperature: float, top_k: int | None,
                generator: torch.Generator | None) -> torch.Tensor:
        """``logits (B, V)`` -> sampled ids ``(B, 1)``."""
        if temperature == 0 or top_k == 1:
            return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        logits = logits.float() / temperature
        if top_k is not None and top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = F.softmax(logits, dim=-1)  # (B, V)
        return torch.multinomial(probs, 1, generator=generator)  # (B, 1)

    def num_parameters(self, *, non_embedding: bool = False) -> int:
        """Trainable parameters, tied weights counted once.

        Args:
            non_embedding: leave out the token and learned position tables and an
                untied output head (the count scaling laws use, Kaplan et al. 2020,
                arXiv:2001.08361).
        """
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            embeddings = {id(p): p for p in (*self.embed.parameters(), self.lm_head.weight)}
            total -= sum(p.numel() for p in embeddings.values())
        return total
