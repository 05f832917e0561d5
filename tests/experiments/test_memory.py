"""`attnkit memory`: a tiny run end to end through the CLI (report files, metrics, goals,
attention figure data), the paper's table, per-task errors, and bad arguments (exit 2,
one line, before any work)."""

from __future__ import annotations

import json

import pytest
import torch
from _translate_helpers import run_cli

import attnkit.experiments.memory.run as run_module
from attnkit.experiments.memory.paper import PAPER_1K, paper_mean
from attnkit.experiments.memory.run import per_task_errors
from attnkit.experiments.report import REPORT_FILES


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_quick_run_end_to_end(tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, err = run_cli(["memory", "--quick", "--tasks", "1", "15", "--examples", "60",
                                 "--test-examples", "20", "--epochs", "2", "--out", str(out)],
                                capsys)
    assert code == 0, err
    for name in (*REPORT_FILES, "attention.png", "valid_accuracy.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["tasks"] == [1, 15]
    assert metrics["data"]["train"] == 2 * 54 and metrics["data"]["test"] == 40
    for hops in ("1", "3"):
        result = metrics["results"][hops]
        assert set(result["errors"]) == {"1", "15"}
        assert result["mean_error"] == pytest.approx(sum(result["errors"].values()) / 2)
        assert result["training"]["epochs_run"] == 2
        weights = metrics["example"]["models"][hops]["weights"]
        assert len(weights) == int(hops)
        for hop in weights:  # one weight per story sentence, summing to one
            assert len(hop) == len(metrics["example"]["story"])
            assert sum(hop) == pytest.approx(1.0, abs=1e-5)
    assert metrics["paper"]["columns"]["PE LS RN joint, 3 hops"]["mean"] == \
        pytest.approx((0.0 + 0.0) / 2)
    assert [g["met"] for g in metrics["goals"]] and "goal" in stdout
    readme = (out / "README.md").read_text()
    assert "not the official bAbI data" in readme and "Test error (%) per task" in readme


def test_restarts_keep_the_run_with_the_best_validation_accuracy(tmp_path, capsys):
    out = tmp_path / "report"
    code, _, err = run_cli(["memory", "--quick", "--tasks", "1", "15", "--hops", "1",
                            "--examples", "150", "--test-examples", "10", "--epochs", "3",
                            "--ls-epochs", "0",
                            "--restarts", "3", "--no-progress", "--out", str(out)], capsys)
    assert code == 0, err
    training = json.loads((out / "metrics.json").read_text())["results"]["1"]["training"]
    accuracies = training["restart_valid_accuracies"]
    assert len(accuracies) == 3 and len(set(accuracies)) > 1  # the seeds differ
    assert training["best_valid_accuracy"] == max(accuracies)
    assert training["seed"] == accuracies.index(max(accuracies))  # seeds 0, 1, 2


def test_the_deepest_model_gets_restarts_and_the_others_baseline_restarts(tmp_path, capsys):
    out = tmp_path / "report"
    code, _, err = run_cli(["memory", "--quick", "--tasks", "1", "--hops", "1", "2",
                            "--examples", "60", "--test-examples", "10", "--epochs", "1",
                            "--ls-epochs", "0", "--restarts", "2", "--baseline-restarts", "1",
                            "--no-progress", "--out", str(out)], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    results = metrics["results"]
    assert len(results["2"]["training"]["restart_valid_accuracies"]) == 2
    assert len(results["1"]["training"]["restart_valid_accuracies"]) == 1
    assert set(results["2"]["valid_errors"]) == {"1"}  # per-task validation error
    assert "2 training runs for the deepest model and 1" in (out / "README.md").read_text()


def test_runs_in_worker_processes_equal_runs_in_one_process(tmp_path, capsys):
    """--workers 2 trains the same models as --workers 1 (each run has its own seed and one
    thread either way), and keeps the same best run per hop count."""
    metrics = {}
    for workers in ("1", "2"):
        out = tmp_path / workers
        code, stdout, err = run_cli(
            ["memory", "--quick", "--tasks", "1", "15", "--hops", "1", "2", "--examples", "80",
             "--test-examples", "10", "--epochs", "2", "--restarts", "2",
             "--baseline-restarts", "1", "--optimizer", "sgd", "--lr", "0.1", "--ls-lr", "0.1",
             "--ls-epochs", "1", "--workers", workers, "--out", str(out)], capsys)
        assert code == 0, err
        assert f"3 training runs in {workers} process(es)" in stdout
        metrics[workers] = json.loads((out / "metrics.json").read_text())
    for hops in ("1", "2"):
        one, two = metrics["1"]["results"][hops], metrics["2"]["results"][hops]
        assert one["errors"] == two["errors"]
        assert one["training"]["restart_valid_accuracies"] == \
            two["training"]["restart_valid_accuracies"]
        assert one["training"]["history"] == [
            {**h, "elapsed_s": one["training"]["history"][i]["elapsed_s"]}
            for i, h in enumerate(two["training"]["history"])]
    assert metrics["2"]["results"]["2"]["training"]["workers"] == 2
    history = metrics["1"]["results"]["2"]["training"]["history"]
    assert [h["linear_start"] for h in history] == [True, False]  # exactly --ls-epochs 1


def test_paper_columns_reproduce_the_published_means():
    assert paper_mean("PE LS RN joint, 3 hops", list(range(1, 21))) == pytest.approx(12.4,
                                                                                    abs=0.05)
    assert paper_mean("PE LS joint, 1 hop", list(range(1, 21))) == pytest.approx(25.8,
                                                                                abs=0.05)
    assert all(len(col) == 20 for col in PAPER_1K.values())


def test_per_task_errors():
    predicted = torch.tensor([1, 2, 3, 4])
    answers = torch.tensor([1, 0, 3, 3])
    tasks = torch.tensor([5, 5, 7, 7])
    assert per_task_errors(predicted, answers, tasks, [5, 7]) == {5: 50.0, 7: 50.0}


@pytest.mark.parametrize("argv", [
    ["--tasks", "0"], ["--tasks", "21"], ["--tasks", "1", "1"], ["--hops", "0"],
    ["--hops", "3", "3"], ["--examples", "5"], ["--examples", "many"], ["--epochs", "0"],
    ["--noise", "1.5"], ["--lr", "0"], ["--minutes", "nan"], ["--seed", "-1"],
    ["--restarts", "0"], ["--baseline-restarts", "0"], ["--bogus"], ["--workers", "0"],
    ["--optimizer", "rmsprop"], ["--ls-lr", "0"], ["--clip", "-1"],
    ["--out", "/proc/attnkit-cannot-write-here"],
])
def test_bad_arguments_exit_2_with_one_line_before_any_work(argv, monkeypatch, capsys,
                                                            tmp_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(run_module, "splits", forbidden)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["memory", *argv], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err


def test_help_exits_0(capsys):
    code, out, _ = run_cli(["memory", "--help"], capsys)
    assert code == 0 and "--quick" in out and "not the official" in out.lower().replace(
        "\n", " ").replace("  ", " ")
