"""The report directory every experiment writes: metrics.json, README.md, PNGs, report.html.

An experiment describes its result once, as an ordered list of blocks, and :class:`Report`
writes it four ways::

    report = Report("runs/x", title="attnkit translate: transformer")
    report.add_list(["corpus: 1200 pairs", "test: BLEU 12.3"])
    report.add_table(["words", "BLEU"], [["3-5", 11.2], ["6-8", 9.7]], title="By length")
    report.add_figure("alignments", fig, caption="attention of four test sentences")
    report.write(metrics)          # -> runs/x/{metrics.json, README.md, alignments.png,
                                   #            report.html}

``README.md`` is markdown for GitHub and terminals; ``report.html`` is one self-contained page
(the PNGs embedded as base64 data URIs, no scripts, no external links) that any browser
opens offline. Every text that reaches the HTML page is escaped; the only markup kept from
text is ``**bold**`` and ```code```, applied after escaping. Every file is written
atomically (:mod:`attnkit._io`), so a crash leaves the previous report or the new one.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attnkit._io import atomic_write_bytes, atomic_write_json, atomic_write_text
from attnkit._validate import safe_name
from attnkit.errors import UserError
from attnkit.interp.figures import PNG_SIGNATURE, figure_png

__all__ = ["Report", "REPORT_FILES"]

#: the files every report directory holds (plus one PNG per figure)
REPORT_FILES = ("metrics.json", "README.md", "report.html")

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; }
code, pre { background: #f6f6f6; font-size: 0.85rem; }
pre { padding: 0.6rem; overflow-x: auto; }
"""


def _cell_text(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.2f}"
    return "-" if value is None else str(value)


def _markdown_cell(value: Any) -> str:
    return " ".join(_cell_text(value).split()).replace("|", "\\|")


def _inline_html(text: str) -> str:
    """Escape ``text``, then turn ``**bold**`` and ```code``` into tags (safe: after escaping)."""
    escaped = html.escape(text, quote=True)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)


class Report:
    """Collects a report's blocks in order and writes the report directory.

    Args:
        out_dir: the report directory (created on :meth:`write`).
        title: the page title (first heading of README.md and report.html).
    """

    def __init__(self, out_dir: str | os.PathLike, *, title: str) -> None:
        if not isinstance(out_dir, (str, os.PathLike)):
            raise TypeError(f"out_dir: expected a path, got {type(out_dir).__name__}")
        self.out_dir = Path(out_dir)
        self.title = self._text(title, "title")
        self._blocks: list[tuple[str, Any]] = []
        self._figures: dict[str, bytes] = {}

    @staticmethod
    def _text(value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise TypeError(f"{name}: expected a str, got {type(value).__name__}")
        return value

    def add_heading(self, text: str) -> None:
        """A section heading."""
        self._blocks.append(("heading", self._text(text, "text")))

    def add_text(self, text: str) -> None:
        """A paragraph (``**bold**`` and ```code``` are kept as such)."""
        self._blocks.append(("text", self._text(text, "text")))

    def add_list(self, items: Sequence[str]) -> None:
        """A bullet list, one line per item."""
        if isinstance(items, str) or not isinstance(items, Sequence):
            raise TypeError(f"items: expected a list of str, got {type(items).__name__}")
        self._blocks.append(("list", [self._text(item, "items[]") for item in items]))

    def add_table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
                  title: str | None = None) -> None:
        """A table: ``headers`` (C names) and rows of C cells (str, int, float or None;
        floats are shown with two decimals, None and NaN as ``-``)."""
        if isinstance(headers, str) or not isinstance(headers, Sequence) or not headers:
            raise ValueError("headers: expected a non-empty list of column names")
        headers = [self._text(h, "headers[]") for h in headers]
        table_rows = []
        for i, row in enumerate(rows):
            if isinstance(row, str) or not isinstance(row, Sequence) or len(row) != len(headers):
                raise ValueError(f"rows[{i}]: expected {len(headers)} cells, got {row!r:.80}")
            table_rows.append(list(row))
        if title is not None:
            self.add_heading(title)
        self._blocks.append(("table", (headers, table_rows)))

    def add_figure(self, name: str, figure: Any, *, caption: str = "") -> Path:
        """A figure, saved as ``<name>.png`` in the report directory.

        Args:
            name: file stem: letters, digits, ``.``, ``_``, ``-`` (no separators).
            figure: a matplotlib Figure (rendered now and closed) or PNG bytes.
            caption: text under the figure.

        Returns:
            the path the PNG will have once :meth:`write` runs.
        """
        try:
            name = safe_name(name, "name")
        except UserError as exc:
            raise ValueError(str(exc)) from None
        if name in self._figures:
            raise ValueError(f"name: a figure named {name!r} was already added")
        if isinstance(figure, (bytes, bytearray)):
            if not bytes(figure).startswith(PNG_SIGNATURE):
                raise ValueError("figure: bytes given are not a PNG (no PNG signature)")
            png = bytes(figure)
        else:
            png = figure_png(figure)
        self._figures[name] = png
        self._blocks.append(("figure", (name, self._text(caption, "caption"))))
        return self.out_dir / f"{name}.png"

    # ------------------------------------------------------------------ rendering

    def markdown(self) -> str:
        """README.md's text."""
        lines = [f"# {self.title}", ""]
        for kind, block in self._blocks:
            if kind == "heading":
                lines += [f"## {block}", ""]
            elif kind == "text":
                lines += [block, ""]
            elif kind == "list":
                lines += [f"- {item}" for item in block] + [""]
            elif kind == "table":
                headers, rows = block
                lines.append("| " + " | ".join(_markdown_cell(h) for h in headers) + " |")
                lines.append("|" + "---|" * len(headers))
                lines += ["| " + " | ".join(_markdown_cell(c) for c in row) + " |"
                          for row in rows]
                lines.append("")
            else:
                name, caption = block
                lines += [f"![{caption or name}]({name}.png)", ""]
                if caption:
                    lines += [caption, ""]
        return "\n".join(lines)

    def html(self, metrics: dict[str, Any]) -> str:
        """report.html's text: one page, figures embedded, every text escaped."""
        parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                 f"<title>{html.escape(self.title)}</title>", f"<style>{_CSS}</style>",
                 "</head><body>", f"<h1>{html.escape(self.title)}</h1>"]
        for kind, block in self._blocks:
            if kind == "heading":
                parts.append(f"<h2>{html.escape(block)}</h2>")
            elif kind == "text":
                parts.append(f"<p>{_inline_html(block)}</p>")
            elif kind == "list":
                parts.append("<ul>" + "".join(f"<li>{_inline_html(item)}</li>"
                                              for item in block) + "</ul>")
            elif kind == "table":
                headers, rows = block
                head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell_text(c))}</td>"
                                                for c in row) + "</tr>" for row in rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
                             f"</table>")
            else:
                name, caption = block
                data = base64.b64encode(self._figures[name]).decode("ascii")
                alt = html.escape(caption or name, quote=True)
                parts.append(f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
                             f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        dump = json.dumps(metrics, indent=2, ensure_ascii=False, default=str)
        parts += ["<details><summary>metrics.json</summary>",
                  f"<pre>{html.escape(dump)}</pre></details>", "</body></html>", ""]
        return "\n".join(parts)

    def write(self, metrics: dict[str, Any]) -> Path:
        """Write metrics.json, the PNGs, README.md and report.html; return the directory.

        Args:
            metrics: JSON-serializable results (a dict; NaN is written as Python's json
                module writes it, ``NaN``).
        """
        if not isinstance(metrics, dict):
            raise TypeError(f"metrics: expected a dict, got {type(metrics).__name__}")
        try:
            json.dumps(metrics)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metrics: not JSON-serializable ({exc})") from None
        for name, png in self._figures.items():
            atomic_write_bytes(self.out_dir / f"{name}.png", png)
        atomic_write_json(self.out_dir / "metrics.json", metrics)
        atomic_write_text(self.out_dir / "README.md", self.markdown())
        atomic_write_text(self.out_dir / "report.html", self.html(metrics))
        return self.out_dir
