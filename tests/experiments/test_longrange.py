"""`attnkit longrange`: the data and task generation, the scoring, the gradient probe against
per-row backward passes, the parameter matching, and the --quick run end to end on the tiny
test corpus."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from _translate_helpers import run_cli

from attnkit.data import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from attnkit.experiments.longrange import MODEL_KINDS, PRESETS, LongRangeConfig
from attnkit.experiments.longrange.data import (
    FIRST_ID,
    CharVocabulary,
    Example,
    TaskBatches,
    TextStream,
    bucket_index,
    bucket_label,
    buckets,
    collate,
    copy_distance,
    make_examples,
    source_index,
    target_of,
    task_batch,
)
from attnkit.experiments.longrange.evaluate import score
from attnkit.experiments.longrange.model import build_model, matched_rnn_config, num_parameters
from attnkit.experiments.longrange.probes import gradient_flow, sequential_steps
from attnkit.experiments.report import REPORT_FILES
from attnkit.models import RNNSeq2SeqConfig, build_rnn_seq2seq

SENTENCES = ["Open the file.", "Close it", "Save all changes now?", "Quit"]


def _vocab_stream():
    vocab = CharVocabulary.from_texts(SENTENCES, 40)
    return vocab, TextStream(SENTENCES, vocab)


# ------------------------------------------------------------------ vocabulary and stream

def test_vocabulary_ranks_by_frequency_and_maps_the_rest_to_unk():
    vocab = CharVocabulary.from_texts(["aab", "ab c"], 3)
    assert vocab.chars == [" ", "a", "b"]  # " " 3 (separators counted), a 3, b 2; c dropped
    assert vocab.vocab_size == FIRST_ID + 3
    assert vocab.encode("abcz") == [FIRST_ID + 1, FIRST_ID + 2, UNK_ID, UNK_ID]
    assert vocab.decode([BOS_ID, FIRST_ID + 2, UNK_ID, EOS_ID, PAD_ID]) == "b\ufffd"
    full = CharVocabulary.from_texts(SENTENCES, 100)
    assert full.decode(full.encode(SENTENCES[2])) == SENTENCES[2]


def test_stream_joins_sentences_and_windows_start_at_sentences_and_wrap():
    vocab, stream = _vocab_stream()
    text = vocab.decode(stream.ids)
    assert text == " ".join(SENTENCES) + " "
    for start, sentence in zip(stream.starts, SENTENCES, strict=True):
        assert text[start:].startswith(sentence)
    window = stream.windows(np.array([stream.starts[3]]), 12)[0]
    assert vocab.decode(window) == "Quit Open th"  # runs around to the start of the split
    rng = np.random.default_rng(0)
    for row in stream.random_windows(rng, 20, 7):
        assert any(vocab.decode(row) == text[s:s + 7] or vocab.decode(row) ==
                   (text + text)[s:s + 7] for s in stream.starts)
    with pytest.raises(ValueError, match="sentences"):
        TextStream(["", ""], vocab)


# ------------------------------------------------------------------ tasks

def test_copy_target_equals_source_and_reverse_is_reversed():
    vocab, stream = _vocab_stream()
    windows = stream.random_windows(np.random.default_rng(1), 5, 9)  # (5, 9)
    for task in ("copy", "reverse"):
        batch = task_batch(windows, task)
        src = batch["src"]
        assert src.shape == (5, 9) and batch["src_lengths"].tolist() == [9] * 5
        expected = src if task == "copy" else torch.flip(src, [1])
        assert torch.equal(batch["tgt_in"][:, 1:], expected)
        assert torch.equal(batch["tgt_out"][:, :-1], expected)
        assert (batch["tgt_in"][:, 0] == BOS_ID).all() and (batch["tgt_out"][:, -1] == EOS_ID).all()
    assert target_of([4, 5, 6], "copy") == [4, 5, 6]
    assert target_of([4, 5, 6], "reverse") == [6, 5, 4]
    with pytest.raises(ValueError, match="task"):
        target_of([4], "sort")


def test_examples_are_deterministic_and_collate_pads():
    vocab, stream = _vocab_stream()
    first = make_examples(stream, [3, 5], 2, "reverse", seed=7)
    assert first == make_examples(stream, [3, 5], 2, "reverse", seed=7)
    assert [len(e.source) for e in first] == [3, 3, 5, 5]
    assert all(e.target == e.source[::-1] for e in first)
    batch = collate(first)
    assert batch["src"].shape == (4, 5) and batch["tgt_in"].shape == (4, 6)
    assert batch["src"][0, 3:].tolist() == [PAD_ID, PAD_ID]
    assert batch["tgt_out"][0].tolist() == [*first[0].target, EOS_ID, PAD_ID, PAD_ID]


def test_training_batches_hold_the_token_budget_at_one_length():
    _, stream = _vocab_stream()
    batches = TaskBatches(stream, "copy", min_len=5, max_len=30, max_tokens=120, seed=3)
    lengths = set()
    for index in range(40):
        batch = batches(index)
        rows, length = batch["src"].shape
        lengths.add(length)
        assert 5 <= length <= 30 and rows == 120 // length
        assert torch.equal(batch["src"], batches(index)["src"])  # deterministic in the index
    assert len(lengths) > 10
    half = batches(5, rank=1, world_size=2)["src"]
    assert torch.equal(half, batches(5)["src"][1::2])


def test_source_index_and_distance():
    assert [source_index("copy", i, 4) for i in range(4)] == [0, 1, 2, 3]
    assert [source_index("reverse", i, 4) for i in range(4)] == [3, 2, 1, 0]
    assert [copy_distance("copy", i, 6) for i in range(6)] == [6] * 6
    assert [copy_distance("reverse", i, 6) for i in range(6)] == [1, 3, 5, 7, 9, 11]
    with pytest.raises(ValueError, match="position"):
        source_index("copy", 4, 4)


def test_length_buckets():
    assert [bucket_label(b) for b in buckets(5, 100)] == [
        "5-9", "10-19", "20-29", "30-39", "40-59", "60-79", "80-100"]
    assert [bucket_label(b) for b in buckets(5, 40)] == ["5-9", "10-19", "20-29", "30-40"]
    assert buckets(1, 4) == [(1, 4)]
    spans = buckets(1, 199)
    assert spans[0][0] == 1 and spans[-1][1] == 199
    assert all(a[1] + 1 == b[0] for a, b in zip(spans, spans[1:], strict=False))  # contiguous
    assert bucket_index(40, buckets(5, 100)) == 4 and bucket_index(100, buckets(5, 100)) == 6
    with pytest.raises(ValueError, match="no bucket"):
        bucket_index(101, buckets(5, 100))


# ------------------------------------------------------------------ scoring

def test_score_counts_tokens_examples_and_distances():
    examples = [Example([4, 5, 6], [6, 5, 4]), Example([7] * 45, [7] * 45)]
    outputs = [[6, 9, 4], [7] * 40]  # 2 of 3 right; 40 of 45 right, cut short
    result = score(examples, outputs, "reverse", min_len=3, max_len=50, long_min=40)
    assert result["token_accuracy"] == pytest.approx(42 / 48)
    assert result["exact_match"] == 0.0
    by_length = {b["bucket"]: b for b in result["by_length"]}
    assert by_length["3-4"]["token_accuracy"] == pytest.approx(2 / 3)
    assert by_length["40-50"]["token_accuracy"] == pytest.approx(40 / 45)
    assert result["long"] == {"min_length": 40, "examples": 1, "tokens": 45,
                              "token_accuracy": pytest.approx(40 / 45), "exact_match": 0.0}
    # reverse: d = 2i + 1; the short example is wrong at d = 3, the long one from i = 40 (d = 81)
    by_distance = {b["bucket"]: b for b in result["by_distance"]}
    assert by_distance["1-4"] == {"bucket": "1-4", "tokens": 4, "accuracy": 0.75}
    assert by_distance["80-100"] == {"bucket": "80-100", "tokens": 5, "accuracy": 0.0}
    assert sum(b["tokens"] for b in result["by_distance"]) == 48
    assert sum(b["accuracy"] * b["tokens"] for b in result["by_distance"]) == pytest.approx(42)
    perfect = score(examples, [e.target for e in examples], "reverse", min_len=3, max_len=50,
                    long_min=40)
    assert perfect["token_accuracy"] == perfect["exact_match"] == 1.0


# ------------------------------------------------------------------ models and probes

@pytest.mark.parametrize("kind", [k for k in MODEL_KINDS if k != "transformer"])
def test_recurrent_models_match_the_transformer_parameter_count(kind):
    torch.manual_seed(0)
    transformer, _ = build_model("transformer", 60, d_model=32, layers=1, heads=2, max_len=50)
    target = num_parameters(transformer)
    model, description = build_model(kind, 60, d_model=32, layers=1, heads=2, max_len=50)
    assert description["parameters"] == num_parameters(model)
    hidden = description["hidden"]
    assert matched_rnn_config(kind, 60, 32, target).hidden_dim == hidden
    gap = abs(num_parameters(model) - target)
    for other in (hidden - 2, hidden + 2):  # no other even hidden size comes closer
        config = RNNSeq2SeqConfig(**{**asdict(model.config), "hidden_dim": other})
        neighbour = build_rnn_seq2seq(config, MODEL_KINDS[kind])
        assert abs(num_parameters(neighbour) - target) >= gap
    assert gap / target < 0.05


@pytest.mark.parametrize("kind", ["rnn-none", "rnn-attention", "transformer"])
def test_gradient_flow_equals_one_backward_per_row(kind):
    """The probe's one batched backward against a float64 loop of one row at a time."""
    vocab, stream = _vocab_stream()
    torch.manual_seed(0)
    model, _ = build_model(kind, vocab.vocab_size, d_model=16, layers=1, heads=2, max_len=20)
    model = model.double()
    length, rows = 6, 8
    flow = gradient_flow(model, stream, "reverse", length=length, rows=rows, seed=5)
    assert flow["distances"] == list(range(1, 2 * length))
    assert len(flow["norm"]) == 2 * length - 1
    # oracle: the same windows, one row and one output position per backward pass
    batch = task_batch(stream.random_windows(np.random.default_rng(5), rows, length), "reverse")
    sums, counts = np.zeros(2 * length), np.zeros(2 * length)
    embedding = model.src_embed.token if kind == "transformer" else model.src_embed
    model.eval()
    for r in range(rows):
        i = r % length
        captured = []
        handle = embedding.register_forward_hook(
            lambda m, a, out, store=captured: store.append(out))
        logits = model(batch["src"][r:r + 1], batch["src_lengths"][r:r + 1],
                       batch["tgt_in"][r:r + 1])
        handle.remove()
        loss = torch.nn.functional.cross_entropy(logits[0, i:i + 1], batch["tgt_out"][r, i:i + 1])
        (grad,) = torch.autograd.grad(loss, captured[0])  # (1, L, E)
        for j in range(length):
            sums[length - j + i] += float(grad[0, j].norm())
            counts[length - j + i] += 1
    expected = sums[1:] / counts[1:]
    np.testing.assert_allclose(flow["norm"], expected, rtol=1e-9)
    assert all(n > 0 for n in flow["norm"])


def test_sequential_steps():
    assert sequential_steps("rnn-attention", 50) == {"encoder": 50, "decoder_training": 51,
                                                     "decoder_generation": 51}
    assert sequential_steps("transformer", 50) == {"encoder": 1, "decoder_training": 1,
                                                   "decoder_generation": 51}


def test_config_checks_arguments():
    with pytest.raises(ValueError, match="models"):
        LongRangeConfig(models=["lstm"])
    with pytest.raises(ValueError, match="tasks"):
        LongRangeConfig(tasks=["copy", "copy"])
    with pytest.raises(ValueError, match="max_len"):
        LongRangeConfig(min_len=50, max_len=10)
    with pytest.raises(ValueError, match="heads"):
        LongRangeConfig(d_model=30, heads=4)
    with pytest.raises(TypeError, match="minutes"):
        LongRangeConfig(minutes="2")


# ------------------------------------------------------------------ end to end

def test_quick_run_end_to_end(data_dir, tmp_path, capsys):
    """--quick with an update cap (the preset's 15 s per model would make the test slow);
    the budget is raised so that the cap, not a loaded machine's speed, ends training."""
    out = tmp_path / "lr"
    code, stdout, err = run_cli(["longrange", "--quick", "--max-steps", "3", "--minutes", "10",
                                 "--no-progress",
                                 "--data-dir", str(data_dir), "--out", str(out)], capsys)
    assert code == 0, err
    for name in (*REPORT_FILES, "token_accuracy_by_length_copy.png",
                 "exact_match_by_length_copy.png", "accuracy_by_distance_copy.png",
                 "gradient_flow_copy.png", "step_time.png", "valid_curve_copy.png"):
        assert (out / name).is_file(), name
    assert (out / "step_time.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((out / "metrics.json").read_text())
    quick = PRESETS["quick"]
    assert metrics["config"]["max_len"] == quick["max_len"] and metrics["config"]["max_steps"] == 3
    assert list(metrics["tasks"]) == ["copy"]
    runs = metrics["tasks"]["copy"]
    assert list(runs) == list(MODEL_KINDS)
    n_test = (quick["max_len"] - 5 + 1) * quick["test_per_length"]
    for run in runs.values():
        assert run["training"]["steps"] == 3
        test = run["test"]
        assert test["examples"] == n_test
        assert 0.0 <= test["token_accuracy"] <= 1.0 and 0.0 <= test["exact_match"] <= 1.0
        assert [b["bucket"] for b in test["by_length"]] == ["5-9", "10-19", "20-29", "30-40"]
        assert sum(b["examples"] for b in test["by_length"]) == n_test
        assert all(0.0 <= b["token_accuracy"] <= 1.0 and 0.0 <= b["exact_match"] <= 1.0
                   for b in test["by_length"])
        assert all(0.0 <= b["accuracy"] <= 1.0 for b in test["by_distance"])
        assert test["long"]["examples"] == quick["test_per_length"]  # only length 40
        for state in ("init", "trained"):
            flow = run["gradient_flow"][state]
            assert len(flow["norm"]) == len(flow["distances"]) == 2 * quick["grad_length"] - 1
            assert all(np.isfinite(flow["norm"])) and min(flow["norm"]) > 0
        assert run["training"]["curve"] and 0 <= run["training"]["curve"][-1][
            "valid_accuracy"] <= 1
    params = metrics["parameters"]
    assert all(abs(p - params["transformer"]) / params["transformer"] < 0.05
               for p in params.values())
    timing = metrics["timing"]["models"]
    assert set(timing) == set(MODEL_KINDS)
    for rows in timing.values():
        assert [r["length"] for r in rows] == quick["timing_lengths"]
        assert all(r["seconds_per_step"] > 0 and r["rows"] * r["length"] <= 2048 for r in rows)
    assert [g["model"] for g in metrics["goal"]] == ["rnn-attention", "transformer", "rnn-none"]
    readme = (out / "README.md").read_text()
    assert "gradient norm" in readme and "sequential steps per layer" in readme
    assert "goal" in stdout
