"""The offline attention viewer: captured attention as one self-contained HTML page.

The page holds three views, in the spirit of bertviz (Vig 2019, "A Multiscale Visualization
of Attention in the Transformer Model", arXiv:1906.05714) and CircuitsVis, but with no CDN,
no network and no external file: its JavaScript and CSS are inline, so it opens the same
offline, from a report folder or an e-mail attachment.

- **Head view**: the query tokens on the left, the key tokens on the right, a line per pair
  weighted by attention, for one head or the mean of a layer's heads (layer and head
  selectors; hovering a token keeps its lines only and colours the other side by weight).
- **Pattern grid**: every head of the layer as a heatmap (and the mean), the selected one at
  full resolution below; hovering a cell shows the token pair and the weight; clicking a
  thumbnail selects that head. Heatmaps are canvases filled pixel by pixel, so 1,024 tokens
  stay responsive.
- **Cross-attention alignment** (encoder-decoder models): target rows against source
  columns with the tokens as labels.

Size: each weight is stored as an 8-bit code on a log scale (code 0: below
:data:`FLOOR`; codes 1..255 span ``[FLOOR, 1]`` evenly in log10, so a weight comes back
within 1.9 % of itself); the codes of all layers are deflated and base64-encoded, and the
page inflates them with the browser's ``DecompressionStream``. Measured: a 4-layer, 4-head
GPT on 1,024 tokens gives a 3.4 MB page (random initialization; random attention logits, the
worst case for deflate, give about 19 MB).

Safety: the data (token strings included) is one JSON document in a
``<script type="application/json">`` block with ``<``, ``>``, ``&``, U+2028 and U+2029
escaped, so no token can close the block or start markup; the script puts tokens into the
page with ``textContent`` only. A Content-Security-Policy allows only the page's own inline
script and style (by hash): even markup that slipped in could not run or load anything.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnkit._io import atomic_write_text
from attnkit.interp.capture import capture
from attnkit.nn.seq2seq.base import Seq2SeqAttention

__all__ = ["AttentionLayer", "FLOOR", "dequantize_weights", "inspect_html",
           "quantize_weights", "viewer_html", "write_viewer"]

#: weights below this are stored as code 0 (shown as "< 0.0001")
FLOOR = 1e-4
_LOG_FLOOR = math.log10(FLOOR)
_STEPS = 254  # codes 1..255 cover log10 weights in [log10(FLOOR), 0]

_ASSETS = "viewer_assets"
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                 "\u2029": "\\u2029"}


@dataclass(frozen=True)
class AttentionLayer:
    """One attention module's weights for one input.

    Attributes:
        name: a label, usually the module path (``"decoder.0.cross_attn"``).
        weights: ``(H, Lq, Lk)`` attention weights in ``[0, 1]`` (a tensor or an array).
        queries: the name of the token sequence along ``Lq`` (a key of ``sequences``).
        keys: the name of the token sequence along ``Lk``; different from ``queries`` for
            cross-attention (which the alignment view shows).
    """

    name: str
    weights: Any
    queries: str
    keys: str


# ----------------------------------------------------------------------------- weights

def quantize_weights(weights) -> np.ndarray:
    """8-bit log-scale codes of attention weights.

    Args:
        weights: any shape, values in ``[0, 1]`` (a tensor or an array).

    Returns:
        uint8 array of the same shape: 0 for weights below :data:`FLOOR`, else
        ``1 + round(254 * (1 - log10(w) / log10(FLOOR)))`` (255 for 1).
    """
    values = _as_tensor(weights, "weights")
    scaled = 1.0 - torch.log10(values.clamp(FLOOR, 1.0)) / _LOG_FLOOR  # in [0, 1]
    codes = torch.where(values >= FLOOR, 1.0 + torch.round(scaled * _STEPS), 0.0)
    return codes.to(torch.uint8).numpy()


def dequantize_weights(codes) -> np.ndarray:
    """The weights that :func:`quantize_weights` codes stand for (float32, code 0 -> 0)."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise TypeError(f"codes must be uint8, got {codes.dtype}")
    table = np.zeros(256, dtype=np.float64)
    table[1:] = 10.0 ** (_LOG_FLOOR * (1.0 - np.arange(_STEPS + 1) / _STEPS))
    return table[codes].astype(np.float32)


def _as_tensor(weights, name: str) -> torch.Tensor:
    """``weights`` as a float32 CPU tensor, checked to be finite and in [0, 1]."""
    if isinstance(weights, np.ndarray):
        weights = torch.from_numpy(weights)
    elif not isinstance(weights, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or a numpy array, got "
                        f"{type(weights).__name__}")
    if not weights.is_floating_point():
        raise TypeError(f"{name} must hold floats, got dtype {weights.dtype}")
    values = weights.detach().to("cpu", torch.float32)
    if values.numel():
        low, high = values.min().item(), values.max().item()
        if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high > 1 + 1e-3:
            raise ValueError(f"{name} must be finite attention weights in [0, 1], got values "
                             f"in [{low:.3g}, {high:.3g}]")
    return values


# ----------------------------------------------------------------------------- the page

def _asset(name: str) -> str:
    text = resources.files("attnkit.interp").joinpath(_ASSETS, name).read_text("utf-8")
    if "</script" in text.lower() or "</style" in text.lower():
        raise RuntimeError(f"viewer asset {name} must not contain a closing script/style tag")
    return text


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its ``<script>`` block or be read as markup or a JS line break."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    for char, escaped in _JSON_ESCAPES.items():
        text = text.replace(char, escaped)
    return text


def _check_tokens(sequences, name: str) -> dict[str, list[str]]:
    if not isinstance(sequences, Mapping) or not sequences:
        raise TypeError(f"{name} must be a non-empty mapping of name -> list of token "
                        f"strings, got {type(sequences).__name__}")
    out = {}
    for key, tokens in sequences.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{name}: sequence names must be non-empty str, got {key!r}")
        if isinstance(tokens, str) or not isinstance(tokens, Sequence) or not tokens:
            raise TypeError(f"{name}[{key!r}] must be a non-empty list of str")
        bad = next((t for t in tokens if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"{name}[{key!r}] must hold str tokens, got "
                            f"{type(bad).__name__}")
        out[key] = list(tokens)
    return out


def viewer_html(layers: Sequence[AttentionLayer], sequences: Mapping[str, Sequence[str]], *,
                title: str = "attnkit attention viewer", notes: Sequence[str] = ()) -> str:
    """One self-contained HTML page showing ``layers`` (module docstring).

    Args:
        layers: the attention to show, in menu order; each ``weights`` is ``(H, Lq, Lk)``
            with ``Lq = len(sequences[queries])`` and ``Lk = len(sequences[keys])``.
        sequences: token strings by sequence name (e.g. ``{"tokens": [...]}``, or
            ``{"source": [...], "target": [...]}`` for an encoder-decoder).
        title: the page title.
        notes: lines of text shown under the title (e.g. the input and the translation).

    Returns:
        the page as a str (write it with :func:`write_viewer`).
    """
    sequences = _check_tokens(sequences, "sequences")
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    if isinstance(notes, str) or not all(isinstance(n, str) for n in notes):
        raise TypeError("notes must be a sequence of str")
    if isinstance(layers, AttentionLayer) or not isinstance(layers, Sequence) or not layers:
        raise TypeError("layers must be a non-empty sequence of AttentionLayer")
    order = list(sequences)
    meta, blocks, offset, names = [], [], 0, set()
    for index, layer in enumerate(layers):
        where = f"layers[{index}]"
        if not isinstance(layer, AttentionLayer):
            raise TypeError(f"{where} must be an AttentionLayer, got {type(layer).__name__}")
        if not isinstance(layer.name, str) or not layer.name or layer.name in names:
            raise ValueError(f"{where}.name must be a unique non-empty str, got {layer.name!r}")
        names.add(layer.name)
        for axis in ("queries", "keys"):
            if getattr(layer, axis) not in sequences:
                raise ValueError(f"{where}.{axis}: {getattr(layer, axis)!r} is not one of the "
                                 f"sequences {order}")
        values = _as_tensor(layer.weights, f"{where}.weights")
        rows, cols = len(sequences[layer.queries]), len(sequences[layer.keys])
        if values.ndim != 3 or values.shape[0] < 1 or values.shape[1:] != (rows, cols):
            raise ValueError(f"{where}.weights must be (H, Lq={rows}, Lk={cols}) for "
                             f"{layer.queries!r} x {layer.keys!r}, got shape "
                             f"{tuple(values.shape)}")
        codes = quantize_weights(values)
        blocks.append(codes.tobytes())
        meta.append({"name": layer.name, "queries": order.index(layer.queries),
                     "keys": order.index(layer.keys), "heads": int(values.shape[0]),
                     "rows": rows, "cols": cols, "offset": offset})
        offset += codes.size
    blob = base64.b64encode(zlib.compress(b"".join(blocks), 6)).decode("ascii")
    data = {"version": 1, "title": title, "notes": list(notes), "floor": FLOOR,
            "sequences": [{"name": name, "tokens": sequences[name]} for name in order],
            "layers": meta, "blob": blob}
    script, style = _asset("viewer.js"), _asset("viewer.css")
    csp = (f"default-src 'none'; script-src '{_sha256(script)}'; "
           f"style-src '{_sha256(style)}'; img-src data:; base-uri 'none'; form-action 'none'")
    safe_title = html.escape(title, quote=True)
    values = {"CSP": html.escape(csp, quote=True), "TITLE": safe_title, "STYLE": style,
              "DATA": _json_for_script(data), "SCRIPT": script}
    # one pass over the template: text put in is never searched for placeholders again
    return re.sub(r"@@([A-Z]+)@@", lambda match: values[match.group(1)], _PAGE)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="@@CSP@@">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@@TITLE@@</title>
<style>@@STYLE@@</style>
</head>
<body>
<header>
<h1>@@TITLE@@</h1>
<div id="notes"></div>
<div id="error"></div>
</header>
<div class="controls">
<label>layer <select id="layer"></select></label>
<label>head <select id="head"></select></label>
<label>head view: lines from weight <input id="minweight" type="number" min="0" max="1"
 step="0.01" value="0.01"></label>
<label>colour scale <select id="scale"><option value="linear">linear</option>
<option value="log">log (from 0.0001)</option></select></label>
</div>
<main>
<section id="headview-section">
<h2>Head view</h2>
<p class="describe" id="headview-describe"></p>
<p class="describe">Queries on the left, keys on the right, a line per weight from the chosen
threshold on. Hover a token to keep its lines only, scaled to its strongest weight.</p>
<div class="headview"><div class="tokcol left" id="hv-left"></div><canvas id="hv-canvas">
</canvas><div class="tokcol right" id="hv-right"></div></div>
</section>
<section id="grid-section">
<h2>Pattern grid</h2>
<p class="describe">Every head of the layer (rows: queries, columns: keys); hover for the
token pair and weight, click to select a head.</p>
<div class="grid" id="grid"></div>
<h2 id="focus-title"></h2>
<div id="focus"></div>
</section>
<section id="align-section" hidden>
<h2>Cross-attention alignment</h2>
<div class="controls"><label>layer <select id="align-layer"></select></label>
<label>head <select id="align-head"></select></label></div>
<p class="describe" id="align-describe"></p>
<div id="align"></div>
</section>
</main>
<div id="tooltip"></div>
<script type="application/json" id="attnkit-data">@@DATA@@</script>
<script>@@SCRIPT@@</script>
</body>
</html>
"""


def write_viewer(path: str | os.PathLike, page: str) -> Path:
    """Write ``page`` (from :func:`viewer_html` or :func:`inspect_html`) to ``path``
    atomically (a temporary file in the same folder, then a rename); returns the path."""
    if not isinstance(page, str):
        raise TypeError(f"page must be a str, got {type(page).__name__}")
    return atomic_write_text(path, page)


# ----------------------------------------------------------------------------- models

def _ids(value, name: str) -> torch.Tensor:
    """``(L,)`` or ``(1, L)`` integer ids -> ``(1, L)`` long."""
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value)
    if value.dtype in (torch.bool,) or value.is_floating_point() or value.is_complex():
        raise TypeError(f"{name} must hold integer token ids, got dtype {value.dtype}")
    if value.dim() == 2 and value.shape[0] == 1:
        value = value[0]
    if value.dim() != 1 or value.numel() == 0:
        raise ValueError(f"{name} must be (L,) or (1, L) with L >= 1, got shape "
                         f"{tuple(value.shape)}")
    return value.long()[None]


def _role(name: str, module: torch.nn.Module) -> str:
    """``"cross"``, ``"source"`` (encoder self-attention) or ``"target"`` for a module of an
    encoder-decoder model, from its type and path."""
    if isinstance(module, Seq2SeqAttention) or "cross" in name.rsplit(".", 1)[-1]:
        return "cross"
    return "source" if name.split(".", 1)[0] == "encoder" else "target"


@torch.no_grad()
def inspect_html(model: torch.nn.Module, ids, tokens: Sequence[str], *, source_ids=None,
                 source_tokens: Sequence[str] | None = None,
                 output_tokens: Sequence[str] | None = None, layers=None,
                 title: str = "attnkit attention viewer", notes: Sequence[str] = ()) -> str:
    """Run ``model`` on one input under :func:`~attnkit.interp.capture` and return the viewer.

    Decoder-only and encoder-only models (GPT, BertEncoder, ...) are called as
    ``model(ids)``; with ``source_ids`` the model is an encoder-decoder (Transformer, RNN
    seq2seq) called as ``model(src, src_lengths, tgt_in)`` (teacher forcing). The model runs
    in eval mode (its mode is restored afterwards) on its own backend.

    Args:
        model: an ``nn.Module`` built from attnkit attention modules.
        ids: ``(L,)`` or ``(1, L)`` token ids: the input, or for an encoder-decoder the
            decoder input (BOS + target).
        tokens: ``L`` token strings of ``ids``.
        source_ids: ``(S,)`` or ``(1, S)`` source ids of an encoder-decoder, or None.
        source_tokens: ``S`` token strings (required with ``source_ids``).
        output_tokens: ``L`` strings naming what each decoder position predicts (row
            labels of the cross-attention); None: ``tokens``.
        layers: which attention modules (as ``capture(layers=...)``: paths or indices).
        title, notes: as :func:`viewer_html`.

    Returns:
        the page (write it with :func:`write_viewer`).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    tgt = _ids(ids, "ids")
    seq2seq = source_ids is not None
    if not seq2seq and (source_tokens is not None or output_tokens is not None):
        raise ValueError("source_tokens and output_tokens need source_ids (an encoder-decoder)")
    sequences = {"tokens": tokens} if not seq2seq else {"target input": tokens}
    if seq2seq:
        src = _ids(source_ids, "source_ids")
        if source_tokens is None:
            raise ValueError("source_tokens: required with source_ids")
        sequences |= {"source": source_tokens, "target output": output_tokens or tokens}
    sequences = _check_tokens(sequences, "tokens")
    counts = {"tokens": ("target input" if seq2seq else "tokens", tgt.shape[1])}
    if seq2seq:
        counts |= {"source_tokens": ("source", src.shape[1]),
                   "output_tokens": ("target output", tgt.shape[1])}
    for argument, (sequence, count) in counts.items():
        if len(sequences[sequence]) != count:
            raise ValueError(f"{argument}: {len(sequences[sequence])} strings for {count} "
                             f"positions")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with capture(model, layers=layers, store=("weights",)) as cap:
            if seq2seq:
                model(src.to(device), torch.tensor([src.shape[1]], device=device),
                      tgt.to(device))
            else:
                model(tgt.to(device))
    finally:
        model.train(was_training)
    found = []
    for name, weights in cap.patterns().items():
        if seq2seq:
            role = _role(name, cap.modules[name])
            queries, keys = {"cross": ("target output", "source"),
                             "source": ("source", "source"),
                             "target": ("target input", "target input")}[role]
        else:
            queries = keys = "tokens"
        expected = (len(sequences[queries]), len(sequences[keys]))
        if tuple(weights.shape[2:]) != expected:
            raise ValueError(f"{name} attends {tuple(weights.shape[2:])} (queries, keys) but "
                             f"the tokens give {expected} for {queries!r} x {keys!r}; build "
                             f"the AttentionLayer list yourself and call viewer_html")
        found.append(AttentionLayer(name or type(model).__name__, weights[0].float(),
                                    queries, keys))
    if not found:
        raise ValueError(f"no attention module of {type(model).__name__} ran on this input "
                         f"(captured: {cap.names})")
    return viewer_html(found, sequences, title=title, notes=notes)
