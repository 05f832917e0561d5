"""The offline attention viewer: the page, its data, ``attnkit inspect``, and a real browser.

Unit tests read the page as text: nothing external, the JSON data block round-trips (tokens
exactly, weights within the 8-bit log code's error), hostile tokens are escaped. The CLI
tests build tiny translate and GPT checkpoints in a temporary folder. The browser tests
drive Debian's headless Chromium with Playwright: no console error, a new head redraws the
canvases, a token that is markup shows as text and runs nothing, and a screenshot is taken.
Outside CI they skip when Chromium or Playwright is missing; with ``CI=true`` they fail.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from attnkit import cli
from attnkit.interp import capture
from attnkit.interp.viewer import (
    FLOOR,
    AttentionLayer,
    dequantize_weights,
    inspect_html,
    quantize_weights,
    viewer_html,
    write_viewer,
)
from attnkit.models import (
    GPT,
    GPTConfig,
    RNNSeq2SeqConfig,
    Transformer,
    TransformerConfig,
    build_rnn_seq2seq,
)

XSS = "<img src=x onerror=alert(1)>"
NASTY = [XSS, "</script><script>alert(2)</script>", "a&amp;b", "line\u2028sep\u2029",
         "\"quote'", "<!--", "\n", "", " \u00e9t\u00e9 \U0001f600", "${alert(3)}"]
MAX_RELATIVE = 10 ** (2 / 254) - 1  # half a code step of the log scale: 1.83 %

_DATA = re.compile(r'<script type="application/json" id="attnkit-data">(.*?)</script>', re.S)


def _data(page: str) -> dict:
    match = _DATA.search(page)
    assert match is not None
    return json.loads(match.group(1))


def _codes(data: dict) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(data["blob"])), dtype=np.uint8)


def _layer_weights(data: dict, index: int) -> np.ndarray:
    layer = data["layers"][index]
    size = layer["heads"] * layer["rows"] * layer["cols"]
    codes = _codes(data)[layer["offset"]:layer["offset"] + size]
    return dequantize_weights(codes).reshape(layer["heads"], layer["rows"], layer["cols"])


def _softmax_rows(heads: int, rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(heads, rows, cols, generator=generator), dim=-1)


def _sample_page(tokens=None, title="viewer test") -> tuple[str, list[AttentionLayer]]:
    """Two self-attention layers (head 0 attends to the previous token, head 1 to the
    first: different drawings) and a cross-attention layer."""
    tokens = tokens or [f"t{i}" for i in range(12)]
    n = len(tokens)
    previous = torch.zeros(n, n)
    previous[0, 0] = 1
    previous[torch.arange(1, n), torch.arange(n - 1)] = 1
    first = torch.zeros(n, n)
    first[:, 0] = 1
    source = ["s0", XSS, "s2", "s3", "s4"]
    layers = [AttentionLayer("blocks.0.self_attn", torch.stack([previous, first]),
                             "tokens", "tokens"),
              AttentionLayer("blocks.1.self_attn", _softmax_rows(3, n, n), "tokens", "tokens"),
              AttentionLayer("decoder.0.cross_attn", _softmax_rows(2, n, len(source), 1),
                             "tokens", "source")]
    page = viewer_html(layers, {"tokens": tokens, "source": source}, title=title,
                       notes=["note: " + XSS])
    return page, layers


# ----------------------------------------------------------------------------- the page

def test_page_loads_nothing_from_outside():
    page, _ = _sample_page(tokens=NASTY + [f"t{i}" for i in range(4)])
    markup = _DATA.sub("", page)  # the data block holds the tokens, checked separately
    assert not re.search(r"\b(?:src|href|action|srcset)\s*=", markup, re.I)
    assert "http:" not in markup and "https:" not in markup
    assert not re.search(r"<(?:link|iframe|object|embed|img|base)\b", markup, re.I)
    assert "@import" not in markup and "url(" not in markup
    assert "fetch(" not in markup and "XMLHttpRequest" not in markup
    script = re.findall(r"<script>(.*?)</script>", markup, re.S)
    assert len(script) == 1
    assert not re.search(r"[\"'`]\s*(?:[a-z]+:)?//", script[0])  # no URL in a string literal
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', markup)
    assert policy and "default-src 'none'" in html.unescape(policy.group(1))


def test_data_round_trips_tokens_and_weights():
    tokens = NASTY + ["x"] * 2
    page, layers = _sample_page(tokens=tokens)
    data = _data(page)
    assert [s["name"] for s in data["sequences"]] == ["tokens", "source"]
    assert data["sequences"][0]["tokens"] == tokens  # exactly, hostile strings included
    assert data["sequences"][1]["tokens"] == ["s0", XSS, "s2", "s3", "s4"]
    assert data["notes"] == ["note: " + XSS]
    assert [layer["name"] for layer in data["layers"]] == [layer.name for layer in layers]
    assert len(_codes(data)) == sum(layer.weights.numel() for layer in layers)
    for index, layer in enumerate(layers):
        meta = data["layers"][index]
        assert (meta["heads"], meta["rows"], meta["cols"]) == tuple(layer.weights.shape)
        got, want = _layer_weights(data, index), layer.weights.numpy()
        big = want >= FLOOR
        assert np.all(np.abs(got[big] - want[big]) <= MAX_RELATIVE * want[big] * 1.0001)
        assert np.all(got[~big] == 0)


def test_hostile_tokens_are_escaped_in_the_page():
    page, _ = _sample_page(tokens=NASTY, title="<b>title</b> & " + XSS)
    assert XSS not in page and "<img" not in page
    assert page.count("</script>") == 2  # the data block's and the script's own
    assert page.lower().count("<script") == 2
    assert "\u2028" not in page and "\u2029" not in page
    assert "&lt;b&gt;title&lt;/b&gt; &amp; &lt;img src=x onerror=alert(1)&gt;" in page
    block = _DATA.search(page).group(1)
    assert "<" not in block and ">" not in block and "&" not in block


def test_quantized_weights():
    grid = np.concatenate([[0.0, FLOOR / 2, FLOOR, 1.0], np.logspace(-4, 0, 1001)])
    codes = quantize_weights(grid)
    assert codes.dtype == np.uint8
    assert list(codes[:4]) == [0, 0, 1, 255]
    assert np.all(np.diff(codes[4:].astype(int)) >= 0)
    back = dequantize_weights(codes)
    assert np.all(np.abs(back[4:] - grid[4:]) <= MAX_RELATIVE * grid[4:] * 1.0001)
    assert back[0] == 0 and back[1] == 0 and math.isclose(back[3], 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("change, match", [
    (lambda layers, seqs: [AttentionLayer("a", torch.rand(2, 3), "tokens", "tokens")],
     "weights must be"),
    (lambda layers, seqs: [AttentionLayer("a", torch.full((1, 4, 4), 1.5), "tokens",
                                          "tokens")], "in \\[0, 1\\]"),
    (lambda layers, seqs: [AttentionLayer("a", torch.full((1, 4, 4), math.nan), "tokens",
                                          "tokens")], "finite"),
    (lambda layers, seqs: [AttentionLayer("a", torch.rand(1, 4, 4), "tokens", "nope")],
     "keys"),
    (lambda layers, seqs: [layers[0], layers[0]], "unique"),
    (lambda layers, seqs: [AttentionLayer("a", torch.rand(1, 4, 5), "tokens", "tokens")],
     "Lk=4"),
])
def test_bad_layers_raise_value_error_naming_them(change, match):
    sequences = {"tokens": ["a", "b", "c", "d"]}
    layers = [AttentionLayer("a", torch.rand(1, 4, 4) / 4, "tokens", "tokens")]
    with pytest.raises(ValueError, match=match):
        viewer_html(change(layers, sequences), sequences)


def test_bad_types_raise_type_error():
    layer = AttentionLayer("a", torch.rand(1, 2, 2) / 2, "tokens", "tokens")
    with pytest.raises(TypeError, match="tokens"):
        viewer_html([layer], {"tokens": ["a", 3]})
    with pytest.raises(TypeError, match="layers"):
        viewer_html(layer, {"tokens": ["a", "b"]})
    with pytest.raises(TypeError, match="weights"):
        viewer_html([AttentionLayer("a", [[0.5]], "tokens", "tokens")], {"tokens": ["a"]})
    with pytest.raises(TypeError, match="page"):
        write_viewer("x.html", b"bytes")


def test_write_viewer_is_atomic(tmp_path, monkeypatch):
    page, _ = _sample_page()
    path = write_viewer(tmp_path / "v.html", page)
    assert path.read_text(encoding="utf-8") == page
    monkeypatch.setattr("attnkit._io.os.replace", lambda *a: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):
        write_viewer(tmp_path / "v.html", "new")
    assert path.read_text(encoding="utf-8") == page
    assert [p.name for p in tmp_path.iterdir()] == ["v.html"]


# ----------------------------------------------------------------------------- models

def _gpt(vocab: int = 40, context: int = 16) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, context_len=context, num_layers=2, num_heads=2,
                         d_model=16, dropout=0.1))


def test_inspect_html_shows_what_capture_records():
    model = _gpt().train()
    ids = torch.randint(0, 40, (10,), generator=torch.Generator().manual_seed(3))
    tokens = [XSS if i == 4 else f"w{int(t)}" for i, t in enumerate(ids)]
    page = inspect_html(model, ids, tokens, layers=[-1])
    assert model.training  # the mode is restored
    data = _data(page)
    assert [layer["name"] for layer in data["layers"]] == ["blocks.1.self_attn"]
    assert data["sequences"][0]["tokens"] == tokens
    model.eval()
    with torch.no_grad(), capture(model, layers=[-1]) as cap:
        model(ids[None])
    want = cap.weights("blocks.1.self_attn")[0].numpy()
    got = _layer_weights(data, 0)
    big = want >= FLOOR
    assert np.all(np.abs(got[big] - want[big]) <= MAX_RELATIVE * want[big] * 1.0001)
    above = np.triu_indices(10, 1)  # causal: no weight on later tokens
    assert np.all(got[:, above[0], above[1]] == 0)


def test_inspect_html_encoder_decoder_roles():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(30, 30, d_model=16, num_heads=2,
                                          num_encoder_layers=1, num_decoder_layers=1,
                                          ffn_dim=32))
    source, target = ["a", "b", "c", "d", "e"], ["<s>", "x", "y"]
    page = inspect_html(model, torch.tensor([1, 7, 8]), target,
                        source_ids=torch.tensor([5, 6, 7, 8, 9]), source_tokens=source,
                        output_tokens=["x", "y", "</s>"])
    data = _data(page)
    names = [s["name"] for s in data["sequences"]]
    roles = {layer["name"]: (names[layer["queries"]], names[layer["keys"]])
             for layer in data["layers"]}
    assert roles == {"encoder.0.self_attn": ("source", "source"),
                     "decoder.0.self_attn": ("target input", "target input"),
                     "decoder.0.cross_attn": ("target output", "source")}
    rnn = build_rnn_seq2seq(RNNSeq2SeqConfig(30, 30, embed_dim=8, hidden_dim=8), "bahdanau")
    data = _data(inspect_html(rnn, torch.tensor([1, 7, 8]), target,
                              source_ids=torch.tensor([5, 6, 7, 8, 9]), source_tokens=source))
    assert [(layer["name"], layer["heads"], layer["rows"], layer["cols"])
            for layer in data["layers"]] == [("attention", 1, 3, 5)]
    weights = _layer_weights(data, 0)
    assert np.allclose(weights.sum(-1), 1, atol=0.03)  # rows of a softmax, quantized


def test_inspect_html_bad_arguments():
    model = _gpt()
    with pytest.raises(ValueError, match="tokens"):
        inspect_html(model, torch.tensor([1, 2, 3]), ["a", "b"])
    with pytest.raises(TypeError, match="ids"):
        inspect_html(model, torch.tensor([1.0, 2.0]), ["a", "b"])
    with pytest.raises(ValueError, match="source_ids"):
        inspect_html(model, torch.tensor([1, 2]), ["a", "b"], source_tokens=["a"])
    with pytest.raises(ValueError, match="layers"):
        inspect_html(model, torch.tensor([1, 2]), ["a", "b"], layers=["nope"])


# ----------------------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Untrained tiny translate (Transformer, RNN with attention, RNN without) and GPT
    checkpoints with a byte-level BPE tokenizer."""
    from attnkit.data.tokenizer import train_tokenizer
    from attnkit.experiments.translate.model import build_model
    from attnkit.train import save_checkpoint

    root = tmp_path_factory.mktemp("ckpts")
    tokenizer = train_tokenizer(["the cat sat on the mat", "le chat est sur le tapis"] * 4,
                                vocab_size=280)
    found = {}
    for kind in ("transformer", "rnn-attention", "rnn-none"):
        torch.manual_seed(0)
        model, description = build_model(kind, tokenizer.vocab_size, "tiny")
        report = root / kind
        save_checkpoint(report / "checkpoints" / "ckpt-00000002", model=model, step=2,
                        model_config={"kind": kind, "size": "tiny",
                                      "vocab_size": tokenizer.vocab_size, **description,
                                      "translate_config": {}})
        tokenizer.save(report / "checkpoints" / "tokenizer.json")  # where translate puts it
        found[kind] = report
    config = GPTConfig(vocab_size=tokenizer.vocab_size, context_len=32, num_layers=2,
                       num_heads=2, d_model=16)
    gpt = root / "gpt" / "ckpt-00000001"
    save_checkpoint(gpt, model=GPT(config), step=1, model_config={"config": config.to_dict()})
    tokenizer.save(gpt / "tokenizer.json")
    found["gpt"] = gpt
    induction = root / "induction"  # attnkit induction's layout: a folder per model
    for layers in (1, 2):
        config = GPTConfig(vocab_size=tokenizer.vocab_size, context_len=32, num_layers=layers,
                           num_heads=2, d_model=16, mlp=False)
        save_checkpoint(induction / "checkpoints" / f"attn-{layers}", model=GPT(config),
                        step=3, model_config={"gpt": config.to_dict(),
                                              "induction_model": f"attn-{layers}"})
    tokenizer.save(induction / "tokenizer.json")
    found["induction"] = induction
    found["attn-2"] = induction / "checkpoints" / "attn-2"
    return found


def _run(argv, capsys) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_loading(monkeypatch):
    """Fail the test if weights are loaded or a page is built."""
    def loaded(*args, **kwargs):
        pytest.fail("weights were loaded before the arguments were checked")

    for target in ("attnkit.experiments.translate.translator.load_translator",
                   "attnkit.train.load_checkpoint", "attnkit.interp.viewer.inspect_html",
                   "attnkit.models.BertEncoder.from_pretrained"):
        monkeypatch.setattr(target, loaded)


@pytest.mark.parametrize("argv, words", [
    (["{missing}", "text"], "does not exist"),
    (["{gpt}", ""], "text"),
    (["{gpt}", "   "], "text"),
    (["{gpt}", "text", "--layers", "blocks.7.self_attn"], "--layers"),
    (["{gpt}", "text", "--layers", "2"], "--layers"),
    (["{transformer}", "text", "--layers", "decoder.0.nope"], "--layers"),
    (["{gpt}", "text", "--out", "{folder}"], "--out"),
    (["{afile}", "text"], "CKPT"),
    (["{folder}", "text"], "checkpoint"),
    (["{rnn-none}", "text"], "no attention"),
    (["{induction}", "text"], "holds 2 checkpoints"),
    (["{attn-2}", "text", "--layers", "blocks.0.ffn"], "--layers"),
    (["{gpt}"], "required"),
    (["{gpt}", "text", "--layers"], "--layers"),
])
def test_bad_arguments_exit_2_with_one_line_before_loading(argv, words, checkpoints, tmp_path,
                                                           capsys, no_loading):
    afile = tmp_path / "afile"
    afile.write_text("x")
    names = {"missing": tmp_path / "missing", "afile": afile, "folder": tmp_path,
             **{key: str(path) for key, path in checkpoints.items()}}
    argv = [re.sub(r"\{([a-z0-9-]+)\}", lambda m: str(names[m.group(1)]), arg) for arg in argv]
    code, out, err = _run(["inspect", *argv], capsys)
    assert code == 2, err
    assert out == "" and len(err.splitlines()) == 1 and "Traceback" not in err
    assert words in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("kind, layers, want", [
    ("gpt", [], ["blocks.0.self_attn", "blocks.1.self_attn"]),
    ("gpt", ["--layers", "-1"], ["blocks.1.self_attn"]),
    ("transformer", [], ["encoder.0.self_attn", "decoder.0.self_attn", "decoder.0.cross_attn"]),
    ("rnn-attention", [], ["attention"]),
    ("attn-2", [], ["blocks.0.self_attn", "blocks.1.self_attn"]),
])
def test_inspect_writes_the_page(kind, layers, want, checkpoints, tmp_path, capsys):
    out_file = tmp_path / "page.html"
    code, out, err = _run(["inspect", str(checkpoints[kind]), "the cat " + XSS,
                           "--out", str(out_file), *layers], capsys)
    assert code == 0, err
    assert str(out_file) in out
    data = _data(out_file.read_text(encoding="utf-8"))
    assert [layer["name"] for layer in data["layers"]] == want
    sequences = {s["name"]: s["tokens"] for s in data["sequences"]}
    decoder_only = kind in ("gpt", "attn-2")
    text = "".join(sequences["tokens" if decoder_only else "source"])
    assert XSS in text
    if decoder_only:
        assert sequences["tokens"][0] == "<s>"  # one document, as the model was trained
    else:
        assert sequences["target input"][0] == "<s>"
        assert len(sequences["target output"]) == len(sequences["target input"])
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def test_inspect_gpt_with_a_plain_tokenizers_file(tmp_path, capsys):
    """A tokenizer.json without attnkit's special tokens: its own tokens, no <s> added."""
    tokenizers = pytest.importorskip("tokenizers")
    from attnkit.train import save_checkpoint

    words = ["[UNK]", "the", "cat", "sat", "<b>"]
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(
        {word: i for i, word in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    config = GPTConfig(vocab_size=len(words), context_len=8, num_layers=1, num_heads=2,
                       d_model=8)
    folder = tmp_path / "ckpt"
    save_checkpoint(folder, model=GPT(config), model_config=config.to_dict())
    backend.save(str(folder / "tokenizer.json"))
    out_file = tmp_path / "page.html"
    code, out, err = _run(["inspect", str(folder), "the <b> cat dog", "--out", str(out_file)],
                          capsys)
    assert code == 0, err
    data = _data(out_file.read_text(encoding="utf-8"))
    assert data["sequences"][0]["tokens"] == ["the", "<b>", "cat", "[UNK]"]


def test_inspect_minilm(tmp_path, capsys):
    pytest.importorskip("tokenizers")
    from attnkit.models import minilm_path

    try:
        minilm_path()
    except (ImportError, FileNotFoundError) as exc:
        pytest.skip(f"all-MiniLM-L6-v2 is not installed ({exc})")
    out_file = tmp_path / "minilm.html"
    code, out, err = _run(["inspect", "minilm", "Attention is all you need.", "--out",
                           str(out_file), "--layers", "0", "layers.5.attention"], capsys)
    assert code == 0, err
    data = _data(out_file.read_text(encoding="utf-8"))
    assert data["sequences"][0]["tokens"][0] == "[CLS]"
    assert data["sequences"][0]["tokens"][-1] == "[SEP]"
    assert len(data["layers"]) == 2 and all(layer["heads"] == 12 for layer in data["layers"])


# ----------------------------------------------------------------------------- the browser

def _chromium() -> str | None:
    found = os.environ.get("ATTNKIT_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    return found if found and Path(found).exists() else None


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright (its own browser download is not used)."""
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = ("playwright is not installed (pip install 'attnkit[dev]')"
               if sync_playwright is None else None) or \
        (None if executable else "no chromium executable (apt-get install chromium, or set "
                                 "ATTNKIT_CHROMIUM)")
    if missing:
        if in_ci:
            pytest.fail(f"browser tests cannot run under CI: {missing}")
        pytest.skip(f"browser tests need a browser: {missing}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


class _Page:
    """A loaded viewer page with its console errors and dialogs recorded."""

    def __init__(self, browser, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console",
                     lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(path.as_uri())
        self.page.wait_for_function("document.body.dataset.ready !== undefined",
                                    timeout=20_000)

    def canvas(self, selector: str) -> str:
        """The canvas's pixels (colours included)."""
        return self.page.eval_on_selector(selector, "c => c.toDataURL()")

    def ink(self, selector: str) -> list[int]:
        """Painted pixels per pixel row of a canvas: where lines run, whatever their colour."""
        return self.page.eval_on_selector(selector, """c => {
            const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            const rows = new Array(c.height).fill(0);
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) rows[Math.floor(i / 4 / c.width)]++;
            return rows; }""")


@pytest.fixture
def viewer_page(browser, tmp_path):
    tokens = [f"t{i}" for i in range(6)] + [XSS, "</script><b>bold</b>"] + \
        [f"u{i}" for i in range(6)]
    page, _ = _sample_page(tokens=tokens)
    path = write_viewer(tmp_path / "viewer.html", page)
    opened = _Page(browser, path)
    yield opened, tokens
    opened.page.close()


def test_browser_page_loads_without_console_errors(viewer_page):
    page, _ = viewer_page
    assert page.page.evaluate("document.body.dataset.ready") == "1"
    assert page.page.text_content("#error") == ""
    assert page.errors == []
    assert page.page.locator("#grid canvas").count() == 3  # two heads and their mean
    assert page.page.is_visible("#align-section")  # there is a cross-attention layer


def test_browser_choosing_a_head_changes_the_drawing(viewer_page):
    page, _ = viewer_page
    page.page.select_option("#head", "0")
    lines0, focus0 = page.ink("#hv-canvas"), page.canvas("#focus canvas")
    page.page.select_option("#head", "1")
    lines1, focus1 = page.ink("#hv-canvas"), page.canvas("#focus canvas")
    assert sum(lines0) > 0 and sum(lines1) > 0
    assert lines0 != lines1  # other lines, not just another colour
    assert focus0 != focus1
    page.page.select_option("#head", "0")
    assert page.ink("#hv-canvas") == lines0  # the drawing depends on the head only
    page.page.select_option("#layer", "1")
    assert page.page.locator("#grid canvas").count() == 4  # three heads and their mean
    assert page.errors == []


def test_browser_markup_in_tokens_is_text_and_runs_nothing(browser, viewer_page, tmp_path):
    page, tokens = viewer_page
    shown = page.page.eval_on_selector_all("#hv-left .tok", "els => els.map(e => e.textContent)")
    assert shown == tokens
    assert page.page.locator("img").count() == 0 and page.page.locator("b").count() == 0
    # the tooltip shows tokens too: hover the cell (query 7, key 6) of head 0
    page.page.select_option("#head", "0")
    thumbnail = page.page.locator("#grid canvas").first
    box = thumbnail.bounding_box()
    thumbnail.hover(position={"x": box["width"] * 6.5 / 14, "y": box["height"] * 7.5 / 14})
    tooltip = page.page.text_content("#tooltip")
    assert XSS in tooltip and "</script><b>bold</b>" in tooltip and "1.00" in tooltip
    assert page.page.locator("img").count() == 0
    assert page.dialogs == [] and page.errors == []
    # without the Content-Security-Policy, escaping alone still keeps the markup inert
    html_text = (tmp_path / "viewer.html").read_text(encoding="utf-8")
    bare = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html_text)
    assert bare != html_text
    unprotected = _Page(browser, write_viewer(tmp_path / "bare.html", bare))
    try:
        assert unprotected.page.evaluate("document.body.dataset.ready") == "1"
        assert unprotected.page.locator("img").count() == 0
        assert unprotected.dialogs == [] and unprotected.errors == []
    finally:
        unprotected.page.close()


def test_browser_screenshot(viewer_page, tmp_path):
    page, _ = viewer_page
    page.page.hover("#hv-left .tok >> nth=6")  # a hovered token keeps only its lines
    shot = tmp_path / "viewer.png"
    page.page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert page.errors == []
