"""Reports are written atomically: a failed write leaves the old file and no temp file."""

from __future__ import annotations

import pytest

import attnkit._io as io_module
from attnkit._io import atomic_write_text


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "report.json"
    atomic_write_text(path, "old")

    class Boom:
        def __str__(self):
            raise RuntimeError("crash while writing")

    with pytest.raises(TypeError):
        atomic_write_text(path, Boom())  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left


def test_atomic_write_cleans_up_after_a_crash_mid_write(tmp_path, monkeypatch):
    path = tmp_path / "data.bin"
    io_module.atomic_write_bytes(path, b"old")

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(io_module.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        io_module.atomic_write_bytes(path, b"new contents")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]  # no temp file left
