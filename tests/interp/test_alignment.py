"""Alignment tables and plots."""

from __future__ import annotations

import pytest
import torch

from attnkit.interp import Alignment, alignment_figure, format_alignment, plot_alignments


def _example():
    weights = torch.tensor([[0.9, 0.1, 0.0], [0.02, 0.03, 0.95]])
    return Alignment(["I", " love", " you"], ["je", " t'aime"], weights, title="toy")


def test_table_marks_the_largest_weight_and_hides_small_ones():
    lines = format_alignment(_example()).splitlines()
    assert len(lines) == 3  # header + one row per output token
    assert "love" in lines[0] and "you" in lines[0]
    assert lines[1].split() == ["je", "90*", "10"]
    assert lines[2].split() == ["t'aime", "95*"]  # 2% and 3% are blank


def test_table_without_attention_says_so():
    text = format_alignment(Alignment(["a"], ["b"], None))
    assert "no attention" in text


def test_shape_and_type_checks():
    with pytest.raises(ValueError, match=r"\(T, S\) = \(1, 2\)"):
        Alignment(["a", "b"], ["c"], torch.zeros(2, 2))
    with pytest.raises(TypeError, match="weights"):
        Alignment(["a"], ["b"], [[1.0]])
    with pytest.raises(ValueError, match="width"):
        format_alignment(_example(), width=1)
    with pytest.raises(TypeError, match="width"):
        format_alignment(_example(), width=True)
    with pytest.raises(TypeError, match="alignment"):
        format_alignment("not an alignment")
    with pytest.raises(ValueError, match="finite"):
        Alignment(["a"], ["b"], torch.tensor([[float("nan")]]))
    with pytest.raises(TypeError, match="floating"):
        Alignment(["a"], ["b"], torch.tensor([[1]]))
    with pytest.raises(TypeError, match="source_tokens"):
        Alignment("ab", ["c"], None)
    with pytest.raises(TypeError, match="target_tokens"):
        Alignment(["a"], [1], None)
    with pytest.raises(TypeError, match="title"):
        Alignment(["a"], ["b"], None, title=None)


def test_plot_writes_a_png_grid(tmp_path):
    none = Alignment(["a"], ["b"], None, title="rnn-none")
    path = plot_alignments([[_example(), none], [_example()]], tmp_path / "sub" / "a.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    for bad in ([], [[]], "ab"):
        with pytest.raises(ValueError, match="rows"):
            plot_alignments(bad, tmp_path / "b.png")
    with pytest.raises(TypeError, match="rows"):
        alignment_figure([[_example(), "x"]])
    assert not (tmp_path / "b.png").exists()
