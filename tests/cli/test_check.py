"""``attnkit check``: the table, failure detection, JSON output, unavailable backends."""

from __future__ import annotations

import json

import torch

from attnkit import cli
from attnkit.check import default_cases, run_check


def test_check_quick_passes_and_prints_table(capsys):
    code = cli.main(["check", "--quick", "--dtype", "float32", "--backends", "sdpa", "tiled"])
    out = capsys.readouterr().out
    assert code == 0
    assert "backend" in out.splitlines()[0] and "tolerance" in out.splitlines()[0]
    assert "sdpa" in out and "FAIL" not in out
    assert "0 failed" in out


def test_check_detects_a_wrong_backend(monkeypatch, capsys):
    real = torch.nn.functional.scaled_dot_product_attention

    def off_by_one_percent(*args, **kwargs):
        return real(*args, **kwargs) * 1.01

    # The sdpa backend calls torch's SDPA; the reference and tiled backends do not.
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", off_by_one_percent)
    code = cli.main(["check", "--quick", "--dtype", "float32", "--backends", "sdpa", "tiled"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in out


def test_check_rows_cover_forward_and_backward():
    # Triton's CPU interpreter is slow; tests/kernels/test_triton.py covers that kernel.
    rows = run_check(default_cases(quick=True), dtypes=[torch.bfloat16],
                     backends=["sdpa", "tiled"])
    passes = {(r["backend"], r["pass"]) for r in rows}
    assert ("sdpa", "forward") in passes and ("sdpa", "backward") in passes
    assert ("tiled", "forward") in passes and ("tiled", "backward") in passes
    assert ("reference", "forward") in passes
    assert all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]


def test_check_json_output(tmp_path):
    path = tmp_path / "new" / "check.json"  # a missing folder is created
    assert cli.main(["check", "--quick", "--dtype", "float32", "--backends", "sdpa",
                     "--json", str(path)]) == 0
    rows = json.loads(path.read_text())
    assert rows and {"backend", "case", "max_error", "tolerance", "ok"} <= rows[0].keys()


def test_default_backends_leave_out_those_that_cannot_run_here(monkeypatch, capsys):
    """Without --backends, a backend the dispatcher refuses here is skipped and named."""
    from attnkit.cli import check as check_command

    names = check_command._backend_names()
    unavailable = names[-1]
    seen = {}

    def refusal(name, dtype):
        return "not on this machine" if name == unavailable else None

    def fake_run_check(cases, dtypes, backends):
        seen["backends"] = backends
        return []

    monkeypatch.setattr(check_command, "_refusal_here", refusal)
    monkeypatch.setattr("attnkit.check.run_check", fake_run_check)
    assert cli.main(["check", "--quick"]) == 0
    assert seen["backends"] == [name for name in names if name != unavailable]
    assert f"not checked: {unavailable}: not on this machine" in capsys.readouterr().out


def test_refusal_here_matches_the_dispatcher():
    from attnkit.cli.check import _refusal_here

    assert _refusal_here("sdpa", torch.float32) is None
    assert _refusal_here("tiled", torch.bfloat16) is None
