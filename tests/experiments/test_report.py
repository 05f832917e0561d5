"""The shared report writer: files, escaping, embedding, atomicity, argument checks."""

from __future__ import annotations

import base64
import json
import re

import pytest

from attnkit.experiments.report import REPORT_FILES, Report
from attnkit.interp import pyplot


def _figure():
    fig, ax = pyplot().subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    return fig


def _report(tmp_path):
    report = Report(tmp_path / "out", title="Title <one> & two")
    report.add_list(["**BLEU 12.30** on `test`", "<script>alert(1)</script>"])
    report.add_table(["name", "score"], [["a|b", 1.234567], ["<b>", None], ["n", float("nan")]],
                     title="Scores")
    report.add_text("Plain paragraph with \"quotes\".")
    report.add_figure("curve", _figure(), caption="a <caption>")
    return report


def test_writes_every_file(tmp_path):
    out = _report(tmp_path).write({"bleu": 12.3, "rows": [1, 2]})
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([*REPORT_FILES, "curve.png"])  # no temporary file left behind
    assert json.loads((out / "metrics.json").read_text()) == {"bleu": 12.3, "rows": [1, 2]}
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown(tmp_path):
    text = _report(tmp_path).markdown()
    assert text.startswith("# Title <one> & two\n")
    assert "- **BLEU 12.30** on `test`" in text
    assert "| a\\|b | 1.23 |" in text  # pipes escaped, floats to two decimals
    assert "| <b> | - |" in text and "| n | - |" in text  # None and NaN as "-"
    assert "## Scores" in text and "![a <caption>](curve.png)" in text


def test_html_is_escaped_and_self_contained(tmp_path):
    report = _report(tmp_path)
    out = report.write({"note": "</pre><script>x</script>"})
    page = (out / "report.html").read_text()
    assert "<script>" not in page  # every text escaped, including the metrics dump
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>Title &lt;one&gt; &amp; two</title>" in page
    assert "<strong>BLEU 12.30</strong> on <code>test</code>" in page
    assert "<td>a|b</td>" in page and "<td>&lt;b&gt;</td>" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 1
    assert base64.b64decode(images[0]) == (out / "curve.png").read_bytes()
    assert "http://" not in page and "https://" not in page  # opens offline


def test_png_bytes_and_argument_checks(tmp_path):
    png = (_report(tmp_path).write({}) / "curve.png").read_bytes()
    report = Report(tmp_path / "b", title="t")
    assert report.add_figure("copy", png) == tmp_path / "b" / "copy.png"
    with pytest.raises(ValueError, match="name"):
        report.add_figure("copy", png)  # twice
    for bad in ("../escape", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="name"):
            report.add_figure(bad, png)
    with pytest.raises(ValueError, match="figure"):
        report.add_figure("x", b"GIF89a")
    with pytest.raises(TypeError, match="fig"):
        report.add_figure("y", object())
    with pytest.raises(ValueError, match=r"rows\[0\]"):
        report.add_table(["a", "b"], [[1]])
    with pytest.raises(ValueError, match="headers"):
        report.add_table([], [])
    with pytest.raises(TypeError, match="items"):
        report.add_list("not a list")
    with pytest.raises(TypeError, match="text"):
        report.add_text(3)
    with pytest.raises(TypeError, match="title"):
        Report(tmp_path, title=None)
    with pytest.raises(TypeError, match="out_dir"):
        Report(3, title="t")
    with pytest.raises(TypeError, match="metrics"):
        report.write([1])
    with pytest.raises(ValueError, match="metrics"):
        report.write({"x": object()})
    assert not (tmp_path / "b").exists()  # nothing written by the refused calls


def test_a_failed_write_keeps_the_previous_report(tmp_path, monkeypatch):
    report = _report(tmp_path)
    out = report.write({"version": 1})
    before = (out / "README.md").read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("attnkit._io.os.replace", boom)
    report.add_text("more")
    with pytest.raises(OSError, match="disk full"):
        report.write({"version": 2})
    assert (out / "README.md").read_text() == before
    assert json.loads((out / "metrics.json").read_text()) == {"version": 1}
    assert sorted(p.name for p in out.iterdir()) == sorted([*REPORT_FILES, "curve.png"])
