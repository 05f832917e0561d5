"""`attnkit translate` end to end on a tiny corpus the test compiles from .mo catalogs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from attnkit.cli import main
from attnkit.data.corpus import build_corpus, load_corpus
from attnkit.data.gettext import write_mo
from attnkit.experiments.translate import (
    MODEL_KINDS,
    TranslateConfig,
    TranslateError,
    load_translator,
)

SUBJECTS = [("file", "fichier"), ("folder", "dossier"), ("window", "fenêtre"),
            ("message", "message"), ("picture", "image"), ("document", "document")]
VERBS = [("Open", "Ouvrir"), ("Close", "Fermer"), ("Delete", "Supprimer"),
         ("Save", "Enregistrer"), ("Rename", "Renommer"), ("Print", "Imprimer")]
PLACES = [("now", "maintenant"), ("later", "plus tard"), ("again", "encore une fois"),
          ("from the list", "de la liste"), ("in the background", "en arrière-plan")]


def _entries():
    return [(None, f"{v} the selected {s} {p}", None,
             (f"{vf} le {sf} sélectionné {pf}",))
            for v, vf in VERBS for s, sf in SUBJECTS for p, pf in PLACES]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalogs")
    write_mo(root / "fr" / "LC_MESSAGES" / "app.mo", _entries())
    data = tmp_path_factory.mktemp("data")
    build_corpus("fr", [root], data_dir=data, lookup_packages=False)
    return data


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _train_args(data_dir, out, *extra):
    return ["translate", "train", "--size", "tiny", "--vocab-size", "300", "--minutes", "5",
            "--max-steps", "6", "--eval-every", "3", "--checkpoint-every", "3",
            "--max-tokens", "400", "--test-limit", "4", "--beam-size", "2", "--no-progress",
            "--data-dir", str(data_dir), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "report"
    code = main(_train_args(data_dir, out, "--model", "transformer"))
    assert code == 0
    return out


def test_train_writes_the_report(trained):
    for name in ("metrics.json", "README.md", "alignments.png", "tokenizer.json"):
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["model"] == "transformer" and metrics["training"]["step"] == 6
    assert 0.0 <= metrics["bleu"] <= 100.0 and 0.0 <= metrics["chrf"] <= 100.0
    assert metrics["bleu_signature"].startswith("nrefs:1")
    assert sum(b["sentences"] for b in metrics["by_length"]) == metrics["test_sentences"]
    assert metrics["test_sentences"] == min(4, metrics["corpus"]["pairs"]["test"])
    assert "valid_loss" in metrics["training"]
    assert (trained / "README.md").read_text().count("BLEU") >= 2
    assert (trained / "alignments.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_from_the_checkpoint(trained, data_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    code, _, err = _run(_train_args(data_dir, copy, "--model", "transformer"), capsys)
    assert code == 2 and "--resume" in err and len(err.strip().splitlines()) == 1
    code, _, _ = _run(_train_args(data_dir, copy, "--model", "transformer", "--resume",
                                  "--max-steps", "8"), capsys)
    assert code == 0
    metrics = json.loads((copy / "metrics.json").read_text())
    assert metrics["training"]["step"] == 8
    steps = [json.loads(line)["step"] for line in
             (copy / "checkpoints" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 8


def test_checkpoint_reloads_to_the_same_weights(trained):
    translator, model_config = load_translator(trained)
    assert model_config["kind"] == "transformer"
    # The report's model is the checkpoint's model: same translation both ways.
    again, _ = load_translator(trained / "checkpoints")
    outputs_a, _ = translator.translate(["Open the selected file now"])
    outputs_b, _ = again.translate(["Open the selected file now"])
    assert outputs_a == outputs_b
    for (name, a), (_, b) in zip(translator.model.state_dict().items(),
                                 again.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_eval_and_text(trained, capsys, tmp_path):
    code, out, _ = _run(["translate", "eval", str(trained), "--test-limit", "3",
                         "--beam-size", "1", "--json", str(tmp_path / "m.json")], capsys)
    assert code == 0 and "BLEU" in out
    assert json.loads((tmp_path / "m.json").read_text())["test_sentences"] <= 3
    code, out, _ = _run(["translate", "text", str(trained), "Open the file"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) >= 3  # translation, blank line, the alignment table header + rows
    assert lines[1] == ""


@pytest.mark.parametrize("model", ["rnn-attention", "rnn-none"])
def test_recurrent_models_train_end_to_end(model, data_dir, tmp_path, capsys):
    code, out, _ = _run(_train_args(data_dir, tmp_path / model, "--model", model,
                                    "--max-steps", "2"), capsys)
    assert code == 0 and "BLEU" in out
    translator, _ = load_translator(tmp_path / model)
    _, alignments = translator.translate(["Close the window now"], return_alignment=True)
    if model == "rnn-none":
        assert alignments[0].weights is None
    else:
        weights = alignments[0].weights
        assert weights.shape == (len(alignments[0].target_tokens),
                                 len(alignments[0].source_tokens))
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[0]))


def test_missing_and_corrupt_checkpoints_fail_with_one_line(trained, tmp_path, capsys):
    code, _, err = _run(["translate", "text", str(tmp_path / "nowhere"), "Open"], capsys)
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    broken = tmp_path / "broken"
    shutil.copytree(trained, broken)
    for weights in (broken / "checkpoints").glob("ckpt-*/model.safetensors"):
        weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = _run(["translate", "text", str(broken), "Open"], capsys)
    assert code == 2 and err.startswith("attnkit translate: error: checkpoint")
    assert len(err.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TranslateError, match="holds no checkpoint"):
        load_translator(empty)


@pytest.mark.parametrize("argv", [
    ["translate", "train", "--model", "gru"],
    ["translate", "train", "--minutes", "-1"],
    ["translate", "train", "--beam-size", "0"],
    ["translate", "--lang", "xx"],
    ["translate", "text"],
    ["translate", "compare", "--models", "transformer", "lstm"],
])
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error:" in err


def test_config_validation():
    with pytest.raises(ValueError, match="model"):
        TranslateConfig(model="lstm")
    with pytest.raises(ValueError, match="minutes"):
        TranslateConfig(minutes=0)
    with pytest.raises(ValueError, match="beam_size"):
        TranslateConfig(beam_size=0)
    assert set(MODEL_KINDS) == {"transformer", "rnn-attention", "rnn-luong", "rnn-local-p",
                                "rnn-none"}


def test_corpus_round_trip(data_dir):
    corpus = load_corpus("fr", data_dir)
    assert len(corpus.train) + len(corpus.valid) + len(corpus.test) == len(_entries())


def test_compare_writes_table_and_plots(data_dir, tmp_path, capsys):
    out = tmp_path / "compare"
    code, stdout, _ = _run(["translate", "compare", "--models", "rnn-none", "transformer",
                            "--size", "tiny", "--vocab-size", "300", "--max-steps", "2",
                            "--max-tokens", "400", "--test-limit", "3", "--beam-size", "1",
                            "--no-progress", "--data-dir", str(data_dir), "--out", str(out)],
                           capsys)
    assert code == 0 and "rnn-none" in stdout and "transformer" in stdout
    summary = json.loads((out / "comparison.json").read_text())
    assert list(summary["models"]) == ["rnn-none", "transformer"]
    assert all(row["updates"] == 2 for row in summary["models"].values())
    for name in ("bleu_by_length.png", "alignments.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    table = (out / "README.md").read_text()
    assert "| rnn-none |" in table and "| transformer |" in table
