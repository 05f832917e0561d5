"""`attnkit induction`: the --quick run end to end, the standard-library corpus and its split,
the measurements (ICL score, phase change, goals), and bad arguments."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from _translate_helpers import run_cli

import attnkit.experiments.induction.run as run_module
from attnkit.experiments.induction.config import MODEL_KINDS, InductionConfig
from attnkit.experiments.induction.data import (
    EXCLUDED_DIRS,
    split_files,
    split_of,
    stdlib_files,
    train_windows,
    valid_contexts,
)
from attnkit.experiments.induction.evaluate import (
    head_scores,
    icl_score,
    phase_change,
    position_losses,
    steepest_drop,
)
from attnkit.models.gpt import GPT, GPTConfig
from attnkit.train.checkpoint import load_checkpoint


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------ the --quick run


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("induction") / "report"
    data = tmp_path_factory.mktemp("induction-data")
    from attnkit.cli import main

    assert main(["induction", "--quick", "--out", str(out), "--data-dir", str(data),
                 "--threads", "1", "--no-progress"]) == 0
    return out


def test_quick_run_writes_the_report(quick_run):
    for name in ("metrics.json", "README.md", "report.html", "viewer.html", "tokenizer.json",
                 "loss_curve.png", "icl_score.png", "head_scores.png",
                 "induction_attention.png", "loss_by_position.png"):
        assert (quick_run / name).is_file(), name
    assert not [p for p in quick_run.rglob("*.tmp")]  # atomic writes leave no temp file
    readme = (quick_run / "README.md").read_text()
    assert "ICL score" in readme and "goal:" in readme


def test_quick_run_metrics(quick_run):
    m = json.loads((quick_run / "metrics.json").read_text())
    assert m["data"]["python"].count(".") == 2 and m["data"]["files"] == 24
    assert m["data"]["train_files"] + m["data"]["valid_files"] == m["data"]["files"]
    assert m["data"]["library_files"] > m["data"]["files"]
    assert list(m["models"]) == list(MODEL_KINDS)
    for kind, run in m["models"].items():
        layers, _ = MODEL_KINDS[kind]
        steps = [r["step"] for r in run["measurements"]]
        assert steps == [0, 6, 12] and run["training"]["steps"] == 12
        for record in run["measurements"]:
            assert math.isfinite(record["icl_score"]) and record["valid_loss"] > 0
            assert len(record["loss_by_position"]) == 512
            for key in ("prefix_matching", "previous_token", "copying"):
                scores = np.array(record[key]["scores"], dtype=float)
                assert scores.shape == (layers, 2), (kind, key)
                low = -1 if key == "copying" else 0
                assert np.all((scores >= low - 1e-9) & (scores <= 1 + 1e-9))
            best = record["best_prefix_matching"]
            assert best["score"] == pytest.approx(np.max(record["prefix_matching"]["scores"]),
                                                  abs=1e-6)  # the table is rounded
        final = run["measurements"][-1]
        recomputed = icl_score(torch.tensor(final["loss_by_position"]), early=50, late=500,
                               halfwidth=5)
        assert final["icl_score"] == pytest.approx(recomputed, abs=1e-4)
    assert [g["goal"].split()[0] for g in m["goals"]] == ["attn-2", "attn-2", "attn-1",
                                                          "attn-1"]


def test_quick_run_checkpoints_reload_to_the_measured_scores(quick_run, tmp_path, capsys):
    m = json.loads((quick_run / "metrics.json").read_text())
    for kind in MODEL_KINDS:
        ckpt = load_checkpoint(quick_run / "checkpoints" / kind)
        model = GPT(GPTConfig(**ckpt.state["model_config"]["gpt"]))
        model.load_state_dict(ckpt.model_state)
        assert model.config.num_layers == MODEL_KINDS[kind][0]
        assert model.config.mlp == MODEL_KINDS[kind][1]
        scores = head_scores(model.eval(), torch.tensor(m["probe"]["tokens"]))
        final = m["models"][kind]["final"]
        for key in ("prefix_matching", "previous_token", "copying"):
            np.testing.assert_allclose(scores[key]["scores"], final[key]["scores"], atol=1e-5)
    page = tmp_path / "attention.html"
    code, _, err = run_cli(["inspect", str(quick_run / "checkpoints" / "attn-2"),
                            "def f(x):\n    return x", "--out", str(page)], capsys)
    assert code == 0 and page.is_file(), err


# ------------------------------------------------------------------ the corpus


def test_file_list_is_sorted_and_leaves_out_machine_dependent_folders():
    files = stdlib_files()
    assert files == sorted(files) and len(files) > 100
    assert "os.py" in files and "json/decoder.py" in files
    assert not any(set(f.split("/")[:-1]) & EXCLUDED_DIRS for f in files)


def test_file_list_of_a_tree(tmp_path):
    for name in ("a.py", "pkg/b.py", "pkg/c.txt", "test/t.py", "site-packages/x/y.py",
                 "pkg/tests/u.py", "encodings/cp1.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.py"
    outside.write_text("y = 2\n")
    os.symlink(outside, tmp_path / "link.py")
    assert stdlib_files(tmp_path) == ["a.py", "pkg/b.py"]
    with pytest.raises(ValueError, match="root"):
        stdlib_files(tmp_path / "a.py")


def test_split_is_deterministic_disjoint_and_by_path_only():
    files = stdlib_files()
    splits = split_files(files, 0.1)
    assert split_files(files, 0.1) == splits
    assert not set(splits["train"]) & set(splits["valid"])
    assert sorted(splits["train"] + splits["valid"]) == files
    assert 0.05 < len(splits["valid"]) / len(files) < 0.15  # ~600 files, binomial
    # a file's split does not depend on the other files or their order
    shuffled = list(reversed(files))[::3]
    assert all(split_of(name, 0.1) == ("valid" if name in splits["valid"] else "train")
               for name in shuffled)
    assert set(split_files(files, 0.2)["valid"]) >= set(splits["valid"])  # nested fractions


def test_train_windows_depend_on_seed_and_index_only():
    stream = np.arange(10_000, dtype=np.int64)
    first = train_windows(stream, length=16, rows=3, seed=1, index=5)
    assert first.shape == (3, 17) and first.dtype == torch.int64
    assert torch.equal(first, train_windows(stream, length=16, rows=3, seed=1, index=5))
    assert not torch.equal(first, train_windows(stream, length=16, rows=3, seed=1, index=6))
    assert torch.equal(first[:, 1:] - first[:, :-1], torch.ones(3, 16, dtype=torch.int64))
    with pytest.raises(ValueError, match="stream"):
        train_windows(stream[:10], length=16, rows=1, seed=0, index=0)


def test_valid_contexts_stay_inside_one_file():
    files = [np.arange(k * 1000, k * 1000 + size, dtype=np.int64)
             for k, size in enumerate([40, 300, 90, 500])]
    contexts = valid_contexts(files, length=63, count=50, seed=3)
    assert contexts.shape == (50, 64)
    assert torch.equal(contexts, valid_contexts(files, length=63, count=50, seed=3))
    steps = contexts[:, 1:] - contexts[:, :-1]
    assert torch.equal(steps, torch.ones_like(steps))  # contiguous: no file boundary inside
    assert set((contexts[:, 0] // 1000).tolist()) <= {1, 2, 3}  # file 0 is too short
    with pytest.raises(ValueError, match="context"):
        valid_contexts(files, length=600, count=1, seed=0)


# ------------------------------------------------------------------ measurements


def test_icl_score_and_position_losses():
    losses = torch.linspace(3.0, 1.0, 600, dtype=torch.float64)
    # position p is entry p - 1; a linear curve: the window mean is the centre value
    assert icl_score(losses, early=50, late=500, halfwidth=5) == pytest.approx(
        float(losses[499] - losses[49]))
    assert icl_score(losses, early=50, late=500) == pytest.approx(float(losses[499] -
                                                                        losses[49]))
    with pytest.raises(ValueError, match="context"):
        icl_score(losses[:400], early=50, late=500)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, context_len=8, num_layers=1, num_heads=1, d_model=8,
                          mlp=False)).eval()
    contexts = torch.randint(0, 11, (5, 9))
    expected = torch.nn.functional.cross_entropy(
        model(contexts[:, :-1]).transpose(1, 2), contexts[:, 1:], reduction="none").mean(0)
    torch.testing.assert_close(position_losses(model, contexts, batch=2).float(), expected,
                               rtol=1e-5, atol=1e-6)


def test_phase_change_is_the_fastest_rise_per_update():
    steps = [0, 50, 100, 200, 300]
    values = [0.0, 0.05, 0.2, 0.8, 0.85]
    found = phase_change(steps, values)
    assert (found["start"], found["end"], found["step"]) == (100, 200, 150.0)
    assert found["rate"] == pytest.approx(0.6 / 100)
    assert phase_change([0, 10], [0.5, 0.4]) is None and phase_change([0], [1.0]) is None
    assert phase_change(steps, values, min_rise=0.7) is None  # no step rises by 0.7
    assert phase_change([0, 1, 100], [0.0, 0.03, 0.5], min_rise=0.05)["start"] == 1
    drop = steepest_drop(steps, [0.0, -0.01, -0.02, -0.5, -0.55])
    assert (drop["start"], drop["end"], drop["before"], drop["after"]) == (100, 200, -0.02, -0.5)


def _fake(icl: float, best: float) -> dict:
    return {"final": {"icl_score": icl, "best_prefix_matching": {"score": best}}}


def test_probe_draws_only_tokens_seen_in_training():
    min_count = run_module.PROBE_MIN_COUNT
    stream = np.concatenate([np.full(min_count, 9), np.full(min_count - 1, 10),
                             np.full(5 * min_count, 1), np.full(min_count, 300)])
    assert run_module.probe_choices(stream, 512).tolist() == [9, 300]  # BOS (1) is special
    fallback = run_module.probe_choices(np.array([5, 6]), 8)
    assert fallback.tolist() == [4, 5, 6, 7]  # a tiny corpus: every non-special id


def test_quick_run_probe_uses_seen_tokens(quick_run):
    m = json.loads((quick_run / "metrics.json").read_text())
    probe = np.array(m["probe"]["tokens"])
    assert m["probe"]["min_train_count"] == run_module.PROBE_MIN_COUNT
    assert probe.shape == (2, 1 + 2 * 24) and (probe[:, 0] == 1).all()
    assert 0 < m["probe"]["choices"] < m["data"]["vocab_size"] - 4
    assert (probe[:, 1:] >= 4).all()


def test_goal_checks():
    met = run_module.goal_checks({"attn-2": _fake(-0.6, 0.9), "attn-1": _fake(-0.2, 0.1)})
    assert [c["met"] for c in met] == [True, True, True, True]
    missed = run_module.goal_checks({"attn-2": _fake(-0.3, 0.7), "attn-1": _fake(-0.2, 0.3)})
    assert [c["met"] for c in missed] == [False, False, False, False]
    assert len(run_module.goal_checks({"mlp-2": _fake(-0.5, 0.9)})) == 0


def test_config_names_the_field():
    for field, value in (("models", ["attn-3"]), ("models", ["attn-1", "attn-1"]),
                         ("context_len", 256), ("heads", 3), ("positional", "alibi"),
                         ("probe_len", 400), ("minutes", 0.0), ("init_std", -0.1),
                         ("init_std", "wide")):
        with pytest.raises((ValueError, TypeError), match=field):
            InductionConfig(**{field: value})


# ------------------------------------------------------------------ bad arguments


@pytest.fixture
def no_work(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(run_module, "run", fail)
    monkeypatch.setattr(run_module, "load_corpus", fail)


BAD = [
    (["--minutes", "0"], "--minutes"), (["--minutes", "nan"], "--minutes"),
    (["--minutes", "two"], "--minutes"), (["--steps", "0"], "--steps"),
    (["--steps", "1.5"], "--steps"), (["--seed", "-1"], "--seed"),
    (["--threads", "0"], "--threads"), (["--positional", "alibi"], "--positional"),
    (["--models", "attn-3"], "--models"), (["--models"], "--models"),
    (["--models", "attn-2", "attn-2"], "--models"), (["--no-such-flag"], "unrecognized"),
    (["--init-std", "0"], "--init-std"), (["--init-std", "wide"], "--init-std"),
]


@pytest.mark.parametrize("argv,needle", BAD)
def test_bad_flags_exit_2_with_one_line_before_any_work(argv, needle, tmp_path, capsys,
                                                        no_work):
    out = tmp_path / "o"
    code, stdout, err = run_cli(["induction", *argv, "--out", str(out)], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnkit induction"), err
    assert "error:" in lines[0] and "Traceback" not in err and needle in lines[0], lines[0]
    assert stdout == "" and not out.exists()


@pytest.mark.parametrize("where", ["a_file", "below_a_file", "data_below_a_file"])
def test_unwritable_paths_exit_2_before_any_work(where, tmp_path, capsys, no_work):
    afile = tmp_path / "afile"
    afile.write_text("x")
    argv, flag = ["--out", str(afile)], "--out"
    if where == "below_a_file":
        argv = ["--out", str(afile / "sub")]
    elif where == "data_below_a_file":
        argv, flag = ["--out", str(tmp_path / "o"), "--data-dir", str(afile / "d")], "--data-dir"
    code, stdout, err = run_cli(["induction", "--quick", *argv], capsys)
    assert code == 2 and stdout == "", err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in err


def test_init_std_reaches_the_model():
    config = InductionConfig(models=["attn-2"], d_model=64, heads=2, init_std=0.1)
    model = run_module.build_model("attn-2", config, vocab_size=300)
    assert model.config.init_std == 0.1
    assert abs(model.embed.token.weight.std().item() - 0.1) < 0.01
    default = run_module.build_model("attn-2", InductionConfig(d_model=64, heads=2), 300)
    assert default.config.init_std is None
    assert abs(default.embed.token.weight.std().item() - 0.02) < 0.002
