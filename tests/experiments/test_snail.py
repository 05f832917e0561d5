"""`attnkit snail`: the --quick run end to end on a small .hex file the test writes (report
files, metrics, the goal check), the interval arithmetic, and bad arguments (exit 2, one
line, before any work)."""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest
from _translate_helpers import run_cli

from attnkit.data.glyphs import BLOCKS
from attnkit.experiments.report import REPORT_FILES
from attnkit.experiments.snail import MODEL_KINDS, SnailRunConfig
from attnkit.experiments.snail.run import accuracy_interval


@pytest.fixture(scope="module")
def glyph_dir(tmp_path_factory):
    """A data directory holding unifont/unifont.hex: 4 random glyphs per block."""
    root = tmp_path_factory.mktemp("glyphs")
    rng = np.random.default_rng(0)
    lines = []
    for _, first, last in BLOCKS:
        codes = [c for c in range(first, last + 1)
                 if unicodedata.category(chr(c))[0] in "LNPS"][:4]
        for code in codes:
            bits = (rng.random((16, 16)) < 0.35).astype(np.uint8)
            lines.append(f"{code:04X}:{np.packbits(bits, axis=1).tobytes().hex()}")
    (root / "unifont").mkdir()
    (root / "unifont" / "unifont.hex").write_text("\n".join(lines) + "\n")
    return root


def test_quick_run_end_to_end(glyph_dir, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, _ = run_cli(["snail", "--quick", "--data-dir", str(glyph_dir), "--out",
                               str(out), "--threads", "1", "--no-progress"], capsys)
    assert code == 0
    for name in (*REPORT_FILES, "test_accuracy.png", "episode.png",
                 "valid_curve_5-way_1-shot.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    runs = metrics["settings"]["5-way 1-shot"]
    assert list(runs) == list(MODEL_KINDS)
    for r in runs.values():
        assert r["training"]["steps"] == 15  # the equal budget, the same for every model
        assert 0 <= r["test"]["accuracy"] <= 1 and r["test"]["episodes"] == 40
        assert 1 <= r["selected"]["step"] <= 15
    goal = metrics["goal"]
    assert [row["other"] for row in goal["rows"]] == ["tc-only", "attention-only", "protonet"]
    assert goal["met"] == all(runs["snail"]["test"]["accuracy"] > runs[o]["test"]["accuracy"]
                              for o in ("tc-only", "attention-only", "protonet"))
    assert stdout.count("goal 5-way 1-shot") == 3
    assert set(metrics["data"]["alphabets"]) == {"train", "valid", "test"}
    readme = (out / "README.md").read_text()
    assert "The goal" in readme and "Test accuracy" in readme


def test_accuracy_interval():
    result = accuracy_interval([1.0, 0.0, 1.0, 0.0])
    assert result["accuracy"] == 0.5 and result["episodes"] == 4
    assert result["ci95"] == pytest.approx(1.96 * np.sqrt(1 / 3 / 4))
    assert accuracy_interval([0.8] * 10)["ci95"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("argv, message", [
    (["--ways", "1"], "--ways"),
    (["--shots", "0"], "--shots"),
    (["--steps", "0"], "--steps"),
    (["--models", "lstm"], "--models"),
    (["--ways", "5", "5"], "--ways: each value may appear once"),
    (["--minutes", "nan"], "--minutes"),
    (["--lr", "2"], "--lr"),
    (["--test-episodes", "1"], "--test-episodes"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys, tmp_path):
    code, _, err = run_cli(["snail", "--out", str(tmp_path / "r"), *argv], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_missing_glyph_file_and_bad_out_exit_2_before_work(tmp_path, capsys, monkeypatch):
    from dataclasses import replace

    from attnkit.data.packaged import PACKAGED

    monkeypatch.setitem(PACKAGED, "glyphs",
                        replace(PACKAGED["glyphs"], system_dir=str(tmp_path / "none")))
    code, _, err = run_cli(["snail", "--quick", "--data-dir", str(tmp_path / "empty"),
                            "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "attnkit data fetch --glyphs" in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(["snail", "--quick", "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and "--out" in err


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="models"):
        SnailRunConfig(models=["snail", "snail"])
    with pytest.raises(ValueError, match="ways"):
        SnailRunConfig(ways=[1])
    with pytest.raises(TypeError, match="steps"):
        SnailRunConfig(steps=1.5)
    assert SnailRunConfig(ways=[5, 20], shots=[1, 5]).settings == [(5, 1), (5, 5), (20, 1),
                                                                    (20, 5)]
