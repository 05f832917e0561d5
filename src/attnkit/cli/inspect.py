"""``attnkit inspect CKPT "text"``: a model's attention on one input as an offline HTML page.

CKPT is any attnkit checkpoint, found and read without unpickling anything:

- a **translate** checkpoint (a report folder, its ``checkpoints/`` folder or a ``ckpt-*``
  folder; the Transformer and every RNN seq2seq kind): the text is the English source, the
  model translates it greedily, then the page shows the attention of the forced decode of
  that translation (encoder and decoder self-attention, cross-attention);
- a **GPT** checkpoint (any attnkit checkpoint whose ``model_config`` holds a
  :class:`~attnkit.models.GPTConfig`, itself or under ``"config"``/``"gpt"``, with a
  ``tokenizer.json`` in the checkpoint folder or one of its two parents), such as the
  ``checkpoints/<model>`` folders of ``attnkit induction``: the text, as one document
  (``<s>`` first when the tokenizer is attnkit's), and its causal self-attention;
- **MiniLM** (all-MiniLM-L6-v2 of the ``attnkit[hf]`` extra) through
  :class:`~attnkit.models.BertEncoder`: the literal ``minilm``, or a Hugging Face BERT folder
  (``config.json``, ``model.safetensors``, ``tokenizer.json``).

Bad arguments (empty text, a missing checkpoint, an unwritable ``--out``, a ``--layers``
entry that names no attention module of the model) exit 2 with one line before any weight
is loaded or anything runs. The page is :func:`attnkit.interp.viewer.inspect_html`'s.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from attnkit._validate import output_file, unique
from attnkit.errors import UserError

HELP = "write a model's attention on one text as a self-contained HTML page"

_MINILM = "minilm"
_GPT_KEYS = ("config", "gpt")  # where a checkpoint's model_config may hold a GPTConfig


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "inspect", help=HELP,
        description="Run a checkpoint on one text and write its attention (head view, "
                    "pattern grid, cross-attention alignment) as one HTML file that opens "
                    "offline. CKPT: a translate report/checkpoint folder, a GPT checkpoint, "
                    "'minilm', or a Hugging Face BERT folder.")
    parser.add_argument("checkpoint", metavar="CKPT", help="checkpoint folder, or 'minilm'")
    parser.add_argument("text", help="the input text (translate: the English source)")
    parser.add_argument("--out", default="attention.html", metavar="FILE",
                        help="the HTML file to write (default: attention.html)")
    parser.add_argument("--layers", nargs="+", default=None, metavar="LAYER",
                        help="attention modules to show: module paths (e.g. "
                             "decoder.0.cross_attn) or indices in model order (e.g. 0 -1); "
                             "default: all")
    return parser


# ----------------------------------------------------------------------------- checkpoints

def _state(folder: Path) -> dict:
    """The ``state.json`` of an attnkit checkpoint folder (JSON only, no tensors)."""
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"CKPT: cannot read {folder / 'state.json'} ({exc})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model_config"), dict):
        raise UserError(f"CKPT: {folder / 'state.json'} holds no model_config")
    return state


def _gpt_fields(model_config: dict) -> dict | None:
    """The GPTConfig fields a model_config holds (itself or under a known key), or None."""
    from dataclasses import fields

    from attnkit.models import GPTConfig

    names = {f.name for f in fields(GPTConfig)}
    for candidate in (model_config, *(model_config.get(key) for key in _GPT_KEYS)):
        if isinstance(candidate, dict) and {"vocab_size", "num_layers", "num_heads"} <= \
                set(candidate) and set(candidate) <= names:
            return candidate
    return None


class _Source:
    """What CKPT names: ``skeleton()`` builds the model without its weights (enough to
    check ``--layers``), ``load()`` gives the page's inputs."""

    def __init__(self, kind: str, path: Path, state: dict | None = None) -> None:
        self.kind, self.path, self.state = kind, path, state

    # ---- skeletons: the architecture only, randomly initialized
    def skeleton(self):
        if self.kind == "bert":
            from attnkit.models import BertConfig, BertEncoder

            try:
                return BertEncoder(BertConfig.from_json_file(self.path / "config.json"))
            except (TypeError, ValueError) as exc:
                raise UserError(f"CKPT: {exc}") from None
        model_config = self.state["model_config"]
        if self.kind == "translate":
            from attnkit.experiments.translate.model import build_model

            shape = model_config.get("translate_config") or {}
            try:
                return build_model(model_config["kind"], model_config.get("vocab_size"),
                                   model_config["size"], width=shape.get("width"),
                                   layers=shape.get("layers"), dropout=shape.get("dropout"))[0]
            except (TypeError, ValueError) as exc:
                raise UserError(f"CKPT: {self.path} holds an invalid model shape ({exc})") \
                    from None
        from attnkit.models import GPT, GPTConfig

        try:
            return GPT(GPTConfig(**_gpt_fields(model_config)))
        except (TypeError, ValueError) as exc:
            raise UserError(f"CKPT: {self.path} holds an invalid GPT config ({exc})") from None


def _find(checkpoint: str) -> _Source:
    """Classify CKPT from its files (JSON only). UserError if it is nothing inspectable."""
    if checkpoint == _MINILM:
        from attnkit.models import minilm_path

        try:
            return _Source("bert", minilm_path())
        except (ImportError, FileNotFoundError) as exc:
            raise UserError(f"CKPT: {exc}") from None
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise UserError(f"CKPT: {path} does not exist (expected a checkpoint folder or "
                        f"'{_MINILM}')")
    if not path.is_dir():
        raise UserError(f"CKPT: {path} is a file; expected a checkpoint folder")
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return _Source("bert", path)
    from attnkit.experiments.translate.translator import resolve_checkpoint

    try:
        folder = resolve_checkpoint(path)
    except UserError:
        # a report folder holding one checkpoint folder per model (attnkit induction)
        named = sorted(item for base in (path, path / "checkpoints") if base.is_dir()
                       for item in base.iterdir()
                       if item.is_dir() and (item / "state.json").is_file())
        if len(named) != 1:
            if named:
                raise UserError(f"CKPT: {path} holds {len(named)} checkpoints; name one: "
                                f"{', '.join(str(item) for item in named)}") from None
            raise
        folder = named[0]
    state = _state(folder)
    from attnkit.experiments.translate.config import MODEL_KINDS

    if state["model_config"].get("kind") in MODEL_KINDS:
        return _Source("translate", folder, state)
    if _gpt_fields(state["model_config"]) is not None:
        return _Source("gpt", folder, state)
    raise UserError(f"CKPT: {folder} is neither a translate checkpoint nor a GPT one (its "
                    f"model_config names no translate model and holds no GPTConfig)")


def _layer_choice(model, layers: list[str] | None) -> list[str | int] | None:
    """``--layers`` as capture() takes them, each checked against the model's modules."""
    if layers is None:
        return None
    from attnkit.interp.capture import attention_modules

    names = list(attention_modules(model))
    chosen: list[str | int] = []
    for layer in layers:
        if re.fullmatch(r"-?\d+", layer):
            index = int(layer)
            if not -len(names) <= index < len(names):
                raise UserError(f"--layers: index {index} is out of range for the "
                                f"{len(names)} attention modules {names}")
            chosen.append(index)
        elif layer in names:
            chosen.append(layer)
        else:
            raise UserError(f"--layers: {layer!r} is not an attention module of this model; "
                            f"its attention modules are {names}")
    # 0 and -1 (or an index and a path) can name the same module: compare what they name
    unique([names[c] if isinstance(c, int) else c for c in chosen], "--layers")
    return chosen


# ----------------------------------------------------------------------------- pages

def _translate_page(source: _Source, text: str, layers) -> str:
    from attnkit.experiments.translate.report import attention_viewer, viewer_source_ids
    from attnkit.experiments.translate.translator import load_translator

    translator, _ = load_translator(source.path)
    try:
        viewer_source_ids(translator, text)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return attention_viewer(translator, text, layers=layers,
                            notes=(f"checkpoint: {source.path} ({translator.kind})",))


def _tokenizer_file(folder: Path) -> Path:
    for place in (folder, folder.parent, folder.parent.parent):
        if (place / "tokenizer.json").is_file():
            return place / "tokenizer.json"
    raise UserError(f"CKPT: no tokenizer.json in {folder} or its two parent folders")


def _gpt_page(source: _Source, model, text: str, layers) -> str:
    import torch

    from attnkit.data.errors import DataError
    from attnkit.data.tokenizer import BOS_ID, SPECIAL_TOKENS, load_tokenizer
    from attnkit.interp.viewer import inspect_html
    from attnkit.train import CheckpointError, load_checkpoint

    tokenizer_path = _tokenizer_file(source.path)
    backend = _plain_tokenizer(tokenizer_path)
    if all(backend.token_to_id(token) == i for i, token in enumerate(SPECIAL_TOKENS)):
        try:  # attnkit's byte-level BPE: readable byte tokens, <s> starts a document
            tokenizer = load_tokenizer(tokenizer_path)
        except DataError as exc:
            raise UserError(f"CKPT: {exc}") from None
        ids = [BOS_ID, *tokenizer.encode(text)]
        tokens = tokenizer.tokens(ids)
    else:
        ids = backend.encode(text, add_special_tokens=False).ids
        tokens = [backend.id_to_token(i) for i in ids]
    context = model.config.context_len
    if len(ids) > context:
        raise UserError(f"text: {len(ids)} tokens, but the model has context_len {context}; "
                        f"shorten it")
    if not ids:
        raise UserError("text: it encodes to no token")
    if max(ids) >= model.config.vocab_size:
        raise UserError(f"CKPT: {tokenizer_path} gives token ids up to {max(ids)} but the "
                        f"model has vocab_size {model.config.vocab_size}")
    try:
        load_checkpoint(source.path, model=model)
    except CheckpointError as exc:
        raise UserError(f"CKPT: {exc}") from None
    notes = [f"checkpoint: {source.path} (GPT, step {source.state.get('step')})",
             f"text: {text}"]
    return inspect_html(model, torch.tensor(ids), tokens, layers=layers,
                        title="attnkit inspect: GPT", notes=notes)


def _plain_tokenizer(path: Path):
    import tokenizers

    try:
        backend = tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for a bad file
        raise UserError(f"CKPT: {path} is not a tokenizer file ({str(exc)[:200]})") from None
    backend.no_truncation()
    backend.no_padding()
    return backend


def _bert_page(source: _Source, text: str, layers) -> str:
    import torch

    from attnkit.interp.viewer import inspect_html
    from attnkit.models import BertEncoder

    if not (source.path / "tokenizer.json").is_file():
        raise UserError(f"CKPT: no tokenizer.json in {source.path}")
    backend = _plain_tokenizer(source.path / "tokenizer.json")
    encoding = backend.encode(text)
    try:
        model = BertEncoder.from_pretrained(source.path)
    except (TypeError, ValueError) as exc:
        raise UserError(f"CKPT: {exc}") from None
    limit = model.config.max_position_embeddings
    if len(encoding.ids) > limit:
        raise UserError(f"text: {len(encoding.ids)} tokens, but the model has {limit} "
                        f"positions; shorten it")
    notes = [f"model: {source.path} (BertEncoder)", f"text: {text}"]
    return inspect_html(model, torch.tensor(encoding.ids), list(encoding.tokens),
                        layers=layers, title="attnkit inspect: BERT encoder", notes=notes)


def run(args: argparse.Namespace) -> int:
    if not args.text.strip():
        raise UserError("text: expected a non-empty text")
    out = output_file(args.out, "--out")
    source = _find(args.checkpoint)
    from attnkit.interp.capture import attention_modules

    skeleton = source.skeleton()
    if not attention_modules(skeleton):
        raise UserError(f"CKPT: this {type(skeleton).__name__} has no attention module to show")
    layers = _layer_choice(skeleton, args.layers)
    if source.kind == "translate":
        page = _translate_page(source, args.text, layers)
    elif source.kind == "gpt":
        page = _gpt_page(source, skeleton, args.text, layers)
    else:
        page = _bert_page(source, args.text, layers)

    from attnkit.interp.viewer import write_viewer

    write_viewer(out, page)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0
