"""``attnkit bench``: each suite runs (smallest sizes) or is wired to its library call, the
report records the command that reproduces it, and the library refuses bad arguments."""

from __future__ import annotations

import json

import pytest

from attnkit import cli
from attnkit.bench import attention, classic_additive, classic_linear, overhead, train
from attnkit.bench.timing import check_lengths, measure, write_report


def test_bench_overhead_writes_json_and_markdown(tmp_path, capsys):
    assert cli.main(["bench", "overhead", "--lengths", "32", "--repeats", "1",
                     "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "overhead.json").read_text())
    assert len(report["rows"]) == 4  # dense/causal x fwd/fwd+bwd
    assert all(row["ratio_vs_sdpa"] > 0 for row in report["rows"])
    assert "machine" in report
    assert report["command"] == f"attnkit bench overhead --lengths 32 --repeats 1 --out {tmp_path}"
    assert "| case |" in (tmp_path / "overhead.md").read_text()


def test_bench_attention_writes_named_report_with_its_command(tmp_path, capsys):
    out = tmp_path / "with space"
    assert cli.main(["bench", "attention", "--lengths", "1", "17", "--cases", "document",
                     "alibi", "--modes", "fwd+bwd", "--candidates", "sdpa-math", "tiled",
                     "--repeats", "1", "--name", "tiny", "--out", str(out)]) == 0
    report = json.loads((out / "tiny.json").read_text())
    rows = report["rows"]
    assert len(rows) == 2 * 2 * 2
    assert all(row["median_ms"] > 0 for row in rows), rows
    assert report["command"] == (
        "attnkit bench attention --lengths 1 17 --cases document alibi --modes fwd+bwd "
        "--candidates sdpa-math tiled --repeats 1 --max-dense-gib 6.0 --name tiny "
        f"--out '{out}'")


def _recorder(monkeypatch, module, name="run"):
    calls = []
    monkeypatch.setattr(module, name, lambda *args, **kwargs: calls.append(kwargs))
    return calls


def test_bench_attention_memory_curve_is_wired(monkeypatch, tmp_path):
    calls = _recorder(monkeypatch, attention, "memory_curve")
    assert cli.main(["bench", "attention", "--memory-curve", "--lengths", "64",
                     "--out", str(tmp_path)]) == 0
    # the timing options do not apply to the curve, so the recorded command leaves them out
    assert calls == [{"lengths": [64], "out_dir": str(tmp_path), "command":
                      f"attnkit bench attention --lengths 64 --memory-curve --out {tmp_path}"}]


def test_bench_classic_runs_both_suites(monkeypatch, tmp_path):
    additive = _recorder(monkeypatch, classic_additive)
    linear = _recorder(monkeypatch, classic_linear)
    assert cli.main(["bench", "classic", "--quick", "--out", str(tmp_path)]) == 0
    expected = {"quick": True, "out_dir": str(tmp_path),
                "command": f"attnkit bench classic --quick --out {tmp_path}"}
    assert additive == [expected] and linear == [expected]


def test_bench_train_is_wired(monkeypatch, tmp_path):
    calls = _recorder(monkeypatch, train)
    assert cli.main(["bench", "train", "--repeats", "2", "--out", str(tmp_path)]) == 0
    assert calls == [{"repeats": 2, "quick": False, "out_dir": str(tmp_path),
                      "command": f"attnkit bench train --repeats 2 --out {tmp_path}"}]


# --- the library: bad arguments raise ValueError/TypeError naming the argument -------------

@pytest.mark.parametrize("call, name", [
    (lambda out: overhead.run(lengths=[0], out_dir=out), "lengths"),
    (lambda out: overhead.run(lengths=[-5], out_dir=out), "lengths"),
    (lambda out: overhead.run(lengths=[], out_dir=out), "lengths"),
    (lambda out: overhead.run(lengths=[2.5], out_dir=out), "lengths"),
    (lambda out: overhead.run(lengths=[8], repeats=0, out_dir=out), "repeats"),
    (lambda out: overhead.run(lengths=[10**9], out_dir=out), "lengths"),
    (lambda out: attention.run(lengths=[0], out_dir=out), "lengths"),
    (lambda out: attention.run(lengths=[8], repeats=0, out_dir=out), "repeats"),
    (lambda out: attention.run(lengths=[8], cases=["nope"], out_dir=out), "cases"),
    (lambda out: attention.run(lengths=[8], cases="dense", out_dir=out), "cases"),
    (lambda out: attention.run(lengths=[8], modes=["bwd"], out_dir=out), "modes"),
    (lambda out: attention.run(lengths=[8], candidates=["nope"], out_dir=out), "candidates"),
    (lambda out: attention.run(lengths=[8], candidates=["triton"], out_dir=out), "triton"),
    (lambda out: attention.run(lengths=[8], max_dense_gib=0.0, out_dir=out), "max_dense_gib"),
    (lambda out: attention.run(lengths=[8], max_dense_gib=float("nan"), out_dir=out),
     "max_dense_gib"),
    (lambda out: attention.run(lengths=[8], max_dense_gib=float("inf"), out_dir=out),
     "max_dense_gib"),
    (lambda out: attention.run(lengths=[8], name="../x", out_dir=out), "name"),
    (lambda out: attention.run(lengths=[8], heads=0, out_dir=out), "heads"),
    (lambda out: attention.run(lengths=[8], device="tpu", out_dir=out), "device"),
    (lambda out: attention.memory_curve(lengths=[0], out_dir=out), "lengths"),
    (lambda out: attention.setup("dense", 0, "tiled", False), "L"),
    (lambda out: classic_additive.run(batch=0, out_dir=out), "batch"),
    (lambda out: classic_additive.run(lengths=[0], out_dir=out), "lengths"),
    (lambda out: classic_additive.run(dim=-1, out_dir=out), "dim"),
    (lambda out: classic_additive.run(threads=0, out_dir=out), "threads"),
    (lambda out: classic_linear.run(quick="yes", out_dir=out), "quick"),
    (lambda out: classic_linear.run(device="tpu", out_dir=out), "device"),
    (lambda out: train.run(repeats=0, out_dir=out), "repeats"),
    (lambda out: train.run(repeats=5, quick=True, out_dir=out), "repeats"),
    (lambda out: measure(lambda: None, repeats=0), "repeats"),
    (lambda out: check_lengths(8), "lengths"),
    (lambda out: write_report([], ["a"], out, "../escape", title="t", command="c"), "name"),
    (lambda out: write_report([], ["a"], out, "", title="t", command="c"), "name"),
])
def test_library_refuses_bad_arguments_before_any_work(call, name, tmp_path):
    with pytest.raises((ValueError, TypeError), match=name):
        call(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing measured, nothing written


# --- ring: wired to its library call; bad arguments refused before any process starts ------

def test_bench_ring_is_wired(monkeypatch, tmp_path):
    from attnkit.bench import ring

    calls = _recorder(monkeypatch, ring)
    assert cli.main(["bench", "ring", "--worlds", "1", "2", "--lengths", "64",
                     "--out", str(tmp_path)]) == 0
    command = (f"attnkit bench ring --worlds 1 2 --lengths 64 --layouts zigzag contiguous "
               f"--heads 8 --kv-heads 8 --threads 1 --repeats 3 --memory profiler "
               f"--max-gib 24.0 --name ring --out {tmp_path}")
    assert calls == [{"worlds": [1, 2], "lengths": [64], "layouts": ["zigzag", "contiguous"],
                      "heads": 8, "kv_heads": 8, "window": None, "threads": 1, "repeats": 3,
                      "timed": True, "memory": "profiler", "max_gib": 24.0,
                      "out_dir": str(tmp_path), "name": "ring", "command": command}]


def test_bench_ring_untimed_sliding_window_is_wired(monkeypatch, tmp_path):
    from attnkit.bench import ring

    calls = _recorder(monkeypatch, ring)
    assert cli.main(["bench", "ring", "--worlds", "1", "2", "--lengths", "64", "--window", "16",
                     "--no-timing", "--out", str(tmp_path)]) == 0
    (call,) = calls
    assert call["window"] == 16 and call["timed"] is False
    assert "--window 16" in call["command"] and "--no-timing" in call["command"]
    assert "--repeats" not in call["command"]  # nothing timed, nothing to repeat


@pytest.mark.parametrize("argv, flag", [
    (["--worlds", "4", "--lengths", "100"], "--lengths"),
    (["--heads", "8", "--kv-heads", "3"], "--kv-heads"),
    (["--worlds", "0"], "--worlds"),
    (["--layouts", "striped"], "--layouts"),
    (["--window", "0"], "--window"),
    (["--no-timing", "--repeats", "2"], "--repeats"),
])
def test_bench_ring_bad_arguments_exit_2(monkeypatch, tmp_path, capsys, argv, flag):
    from attnkit.bench import ring

    calls = _recorder(monkeypatch, ring)
    try:
        code = cli.main(["bench", "ring", *argv, "--out", str(tmp_path)])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and calls == [], err
    assert flag in err and len(err.strip().splitlines()) <= 2  # usage line at most, no traceback


def test_bench_ring_rss_without_clear_refs_exits_2(monkeypatch, tmp_path, capsys):
    """--memory rss on a system that cannot reset the resident-set high-water mark is
    refused by the CLI, naming the option, before any worker starts."""
    from attnkit.bench import ring, timing

    calls = _recorder(monkeypatch, ring)
    monkeypatch.setattr(timing, "_reset_peak_rss", lambda: False)
    code = cli.main(["bench", "ring", "--memory", "rss", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and calls == [], err
    assert "--memory" in err and "clear_refs" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("kwargs, name", [
    ({"worlds": [4], "lengths": [100]}, "lengths"),
    ({"worlds": [0]}, "worlds"),
    ({"layouts": "zigzag"}, "layouts"),
    ({"kv_heads": 3}, "kv_heads"),
    ({"repeats": 0}, "repeats"),
    ({"max_gib": 0.0}, "max_gib"),
    ({"name": "../x"}, "name"),
    ({"window": 0}, "window"),
    ({"window": 2.5}, "window"),
    ({"memory": "psutil"}, "memory"),
])
def test_bench_ring_library_refuses_bad_arguments(kwargs, name, tmp_path):
    from attnkit.bench import ring

    with pytest.raises((ValueError, TypeError), match=name):
        ring.run(out_dir=str(tmp_path), **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_bench_ring_untimed_sliding_window_end_to_end(tmp_path):
    """Real gloo processes on a short sequence: the window reaches the kernels (the ring
    computes fewer logits than under plain causal attention), memory per rank falls with W,
    and an untimed run reports no step time."""
    from attnkit.bench import ring

    kwargs = dict(worlds=[1, 2], lengths=[1024], layouts=["zigzag"], heads=2, kv_heads=1,
                  head_dim=16, timed=False, timeout_s=300.0, out_dir=str(tmp_path),
                  log=lambda line: None)
    windowed = ring.run(window=64, name="windowed", **kwargs)
    full = ring.run(name="full", **kwargs)
    assert [(r["W"], r["candidate"]) for r in windowed] == [(1, "tiled"), (1, "ring"),
                                                            (2, "ring")]
    assert all("step_ms" not in row for row in windowed + full)
    w2 = windowed[2]
    assert w2["vs_one_process"] <= w2["goal"]
    # the same shards, far less work: the window's empty tiles were skipped on every rank
    assert w2["gflop"] < full[2]["gflop"] / 2
    assert windowed[0]["gflop"] < full[0]["gflop"] / 2
    by_rss = ring.run(window=64, name="rss", memory="rss", **kwargs)
    assert all(row["mem_mib"] > 0 and "gflop" not in row and "flop_imbalance" not in row
               for row in by_rss)
    assert by_rss[2]["work_imbalance"] == w2["work_imbalance"]  # the schedule still counted
    assert "memory from the resident set" in (tmp_path / "rss.md").read_text()
    report = (tmp_path / "windowed.md").read_text()
    assert "sliding window of 64 keys" in report and "not timed" in report
    assert "sliding window" not in (tmp_path / "full.md").read_text().splitlines()[0]


def test_bench_ring_overlap_model_numbers():
    from attnkit.bench.ring import overlap_model

    # MHA, non-causal forward: n* = 2 Hkv D s / link x flops / (4 Hq D) = s flops / (2 link).
    model = overlap_model(flops=1e12, link_bytes=1e9, heads=4, kv_heads=4, head_dim=64,
                          element_bytes=2, causal=False)
    assert model["forward_n"] == pytest.approx(2 * 1e12 / (2 * 1e9))
    gqa = overlap_model(flops=1e12, link_bytes=1e9, heads=32, kv_heads=4, causal=False)
    assert gqa["forward_n"] == pytest.approx(model["forward_n"] / 8)


def test_bench_hf_defaults_are_written_the_same_in_the_cli_and_the_library():
    # the CLI keeps its own copy so that `attnkit bench --help` imports no torch
    from attnkit.bench import hf
    from attnkit.cli import bench as bench_cli

    lengths, window, repeats = hf._DEFAULT_SIZES
    assert bench_cli._HF_DEFAULTS == {"lengths": list(lengths), "window": window,
                                      "repeats": repeats}


def test_bench_ring_reports_a_worker_s_exception_not_the_log_lines_after_it():
    from attnkit.bench.ring import _error_line

    stderr = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
              "torch.OutOfMemoryError: tried to allocate 8.00 GiB\n"
              "[W1201 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
    assert _error_line(stderr, 1) == "torch.OutOfMemoryError: tried to allocate 8.00 GiB"
    assert _error_line("RuntimeError: gloo timed out\n", 1) == "RuntimeError: gloo timed out"
    assert _error_line("some log line\n", 1) == "some log line"
    assert _error_line("", -9) == "exit status -9 (killed by a signal)"
