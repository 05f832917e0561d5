"""The one PNG writer: render in memory, write atomically, close the figure."""

from __future__ import annotations

import pytest

from attnkit.interp import figure_png, pyplot, save_png


def test_save_png_writes_atomically_and_closes(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    path = save_png(fig, tmp_path / "deep" / "f.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(path.parent.iterdir()) == [path]
    assert not plt.fignum_exists(fig.number)  # closed: no figure leaks in long runs


def test_bad_arguments():
    with pytest.raises(TypeError, match="fig"):
        figure_png("not a figure")
    fig, _ = pyplot().subplots()
    for dpi in (0, -5, 10**6):
        with pytest.raises(ValueError, match="dpi"):
            figure_png(fig, dpi=dpi)
    with pytest.raises(TypeError, match="dpi"):
        figure_png(fig, dpi=1.5)
    pyplot().close(fig)
