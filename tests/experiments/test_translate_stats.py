"""translate with statistics: the test-long hold-out in training and evaluation, the leakage
guard, and sacreBLEU's paired bootstrap in `translate compare`."""

from __future__ import annotations

import json
import os
import random
import shutil

import pytest
from _translate_helpers import run_cli, train_args

from attnkit.cli import main
from attnkit.data import build_corpus, load_corpus, write_mo
from attnkit.errors import UserError
from attnkit.experiments.translate import CompareConfig, TranslateConfig
from attnkit.experiments.translate.compare import (
    MIN_STATS_SENTENCES,
    STATS_BUCKETS,
    significance,
)
from attnkit.experiments.translate.evaluate import check_held_out
from attnkit.experiments.translate.run import TRANSLATIONS_FILE, fit, training_pairs
from attnkit.experiments.translate.stats import (
    BOOTSTRAP_SAMPLES,
    BOOTSTRAP_SEED,
    paired_bootstrap,
)

LEXICON = {"open": "ouvrir", "close": "fermer", "the": "le", "file": "fichier",
           "folder": "dossier", "window": "fenêtre", "new": "nouveau", "list": "liste",
           "of": "de", "and": "et", "with": "avec", "user": "utilisateur",
           "system": "système", "network": "réseau", "settings": "paramètres",
           "save": "enregistrer", "print": "imprimer", "page": "page", "menu": "menu",
           "now": "maintenant", "later": "plus tard", "first": "premier", "last": "dernier"}


def long_entries() -> list:
    """Message pairs of 4-50 words, most of them long: word-for-word French."""
    rng = random.Random(5)
    words = sorted(LEXICON)
    entries, seen = [], set()
    for low, high, count in ((4, 12, 150), (13, 20, 200), (21, 30, 200), (31, 50, 200)):
        while sum(low <= len(e[1].split()) <= high for e in entries) < count:
            english = [rng.choice(words) for _ in range(rng.randint(low, high))]
            text = " ".join(english).capitalize()
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            entries.append((None, text, None, (" ".join(LEXICON[w] for w in english)
                                               .capitalize(),)))
    return entries


@pytest.fixture(scope="module")
def long_data(tmp_path_factory):
    """A built corpus with a few dozen test-long pairs per stratum."""
    root = tmp_path_factory.mktemp("long-catalogs")
    write_mo(root / "fr" / "LC_MESSAGES" / "app.mo", long_entries())
    data = tmp_path_factory.mktemp("long-data")
    build_corpus("fr", [root], data_dir=data, lookup_packages=False)
    corpus = load_corpus("fr", data)
    assert corpus.test and len(corpus.split("test-long")) >= 30  # the fixture is useful
    return data


def long_args(data_dir, out, *extra):
    return [*train_args(data_dir, out, "--vocab-size", "600", "--max-steps", "2"), *extra]


@pytest.fixture(scope="module")
def held_out_run(long_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("held") / "run"
    assert main(long_args(long_data, out, "--hold-out-long", "--model", "rnn-attention")) == 0
    return out


# ------------------------------------------------------------------------------ bootstrap

def _systems(seed: int = 0, sentences: int = 200):
    rng = random.Random(seed)
    vocab = "le la un une fichier dossier ouvrir fermer fenêtre message image de et".split()
    refs = [" ".join(rng.choice(vocab) for _ in range(rng.randint(5, 12)))
            for _ in range(sentences)]

    def noisy(keep: float) -> list[str]:
        return [r if rng.random() < keep else " ".join(rng.choice(vocab) for _ in range(8))
                for r in refs]

    return refs, noisy(0.9), noisy(0.3)


def test_a_clearly_better_system_is_significant():
    refs, good, bad = _systems()
    result = paired_bootstrap({"bad": bad, "good": good}, refs)
    good_s, bad_s = result["systems"]["good"], result["systems"]["bad"]
    assert good_s["bleu"] > bad_s["bleu"]
    assert bad_s["high"] < good_s["low"]  # the intervals do not overlap
    for s in (good_s, bad_s):
        assert s["low"] <= s["bleu"] <= s["high"] and s["high"] - s["low"] == pytest.approx(
            2 * s["ci"])
    (pair,) = result["pairs"]
    assert (pair["a"], pair["b"]) == ("bad", "good") and pair["p"] < 0.05
    assert pair["delta"] == pytest.approx(good_s["bleu"] - bad_s["bleu"])
    assert result["samples"] == BOOTSTRAP_SAMPLES == 1000 and result["seed"] == BOOTSTRAP_SEED
    assert "bs:1000" in result["signature"] and f"seed:{BOOTSTRAP_SEED}" in result["signature"]


def test_identical_and_near_identical_systems_are_not_significant():
    refs, good, _ = _systems()
    result = paired_bootstrap({"a": good, "b": list(good)}, refs)
    assert result["pairs"][0]["p"] == 1.0 and result["pairs"][0]["delta"] == 0.0
    assert result["systems"]["a"] == result["systems"]["b"]
    nearly = list(good)
    nearly[0] = "fichier"  # one sentence of 200 changed
    assert paired_bootstrap({"a": good, "b": nearly}, refs)["pairs"][0]["p"] > 0.05
    # Different outputs, both at 0 BLEU on every resample: no difference, p = 1.
    zero = paired_bootstrap({"x": ["zzz"] * len(refs), "y": ["qqq"] * len(refs)}, refs)
    assert zero["pairs"][0]["delta"] == 0.0 and zero["pairs"][0]["p"] == 1.0


def test_bootstrap_is_reproducible_and_leaves_the_environment_alone(monkeypatch):
    refs, good, bad = _systems(seed=1, sentences=60)
    monkeypatch.setenv("SACREBLEU_SEED", "None")  # unseeded in sacreBLEU's own terms
    first = paired_bootstrap({"good": good, "bad": bad}, refs)
    assert os.environ["SACREBLEU_SEED"] == "None"
    assert paired_bootstrap({"good": good, "bad": bad}, refs) == first
    other = paired_bootstrap({"good": good, "bad": bad}, refs, seed=7)
    assert other["systems"]["good"]["ci"] != first["systems"]["good"]["ci"]
    # Every pair once, in the order of the systems; three systems make three pairs.
    three = paired_bootstrap({"x": good, "y": bad, "z": good}, refs, samples=50)
    assert [(p["a"], p["b"]) for p in three["pairs"]] == [("x", "y"), ("x", "z"), ("y", "z")]
    assert len(paired_bootstrap({"only": good}, refs, samples=50)["systems"]) == 1


def test_bootstrap_arguments_are_checked():
    refs, good, _ = _systems(sentences=5)
    with pytest.raises(ValueError, match="systems"):
        paired_bootstrap({}, refs)
    with pytest.raises(ValueError, match=r"systems\['a'\]"):
        paired_bootstrap({"a": good[:3]}, refs)
    with pytest.raises(ValueError, match="references"):
        paired_bootstrap({"a": []}, [])
    with pytest.raises(ValueError, match="seed"):
        paired_bootstrap({"a": good}, refs, seed=0)
    with pytest.raises(ValueError, match="samples"):
        paired_bootstrap({"a": good}, refs, samples=0)


def test_significance_covers_every_bucket_of_both_splits():
    refs, good, bad = _systems(sentences=120)
    rng = random.Random(2)
    sources = [" ".join(["word"] * rng.randint(3, 50)) for _ in refs]
    sources[:3] = ["one two three"] * 3  # 3-5 words: under MIN_STATS_SENTENCES
    split = {"sources": sources, "references": refs}
    translations = {"bad": {"test": {**split, "hypotheses": bad},
                            "test-long": {**split, "hypotheses": bad}},
                    "good": {"test": {**split, "hypotheses": good},
                             "test-long": {**split, "hypotheses": good}}}
    stats = significance(translations, samples=100)
    assert set(stats["splits"]) == {"test", "test-long"}
    assert list(stats["splits"]["test-long"]) == ["all", "13-20", "21-30", "31-50", "21-50"]
    for name, buckets in stats["splits"].items():
        for bucket, label in zip(STATS_BUCKETS[name], buckets, strict=True):
            words = [len(s.split()) for s in sources]
            expected = sum(bucket is None or bucket[0] <= n <= bucket[1] for n in words)
            assert buckets[label]["sentences"] == expected
            assert ("systems" in buckets[label]) == (expected >= MIN_STATS_SENTENCES)
            if expected >= MIN_STATS_SENTENCES:
                assert set(buckets[label]["systems"]) == {"bad", "good"}
    assert stats["splits"]["test"]["all"]["pairs"][0]["p"] < 0.05
    translations["good"]["test"] = {**translations["good"]["test"],
                                    "sources": list(reversed(sources))}
    with pytest.raises(UserError, match="different test sentences"):
        significance(translations, samples=10)
    del translations["good"]["test"]  # a split one model lacks is left out
    assert set(significance(translations, samples=10)["splits"]) == {"test-long"}


# ------------------------------------------------------------------------------- hold-out

def test_hold_out_removes_exactly_test_long_from_the_training_batches(long_data, tmp_path):
    corpus = load_corpus("fr", long_data)
    held = {english for english, _ in corpus.split("test-long")}
    config = TranslateConfig(size="tiny", vocab_size=600, minutes=5.0, max_steps=1,
                             max_tokens=400, eval_every=10, checkpoint_every=10,
                             data_dir=str(long_data), out=str(tmp_path / "fit"),
                             progress=False, hold_out_long=True)
    result = fit(config, log=lambda _: None)
    batches, tokenizer = result.batches, result.tokenizer
    assert batches.num_dropped == 0
    seen = []
    for step in range(len(batches)):  # one epoch: every kept pair once
        batch = batches(step)
        seen += [tokenizer.decode(row[:n].tolist())
                 for row, n in zip(batch["src"], batch["src_lengths"], strict=True)]
    expected = [english for english, _ in training_pairs(corpus, config)]
    assert sorted(seen) == sorted(expected)
    assert len(expected) == len(corpus.train) - len(held) and not held & set(seen)
    plain = TranslateConfig(**{**config.__dict__, "hold_out_long": False})
    assert training_pairs(corpus, plain) == corpus.train  # the main job's stream is whole
    assert held <= {english for english, _ in training_pairs(corpus, plain)}


def test_held_out_run_scores_test_long_and_keeps_translations(held_out_run, long_data,
                                                             capsys, tmp_path):
    metrics = json.loads((held_out_run / "metrics.json").read_text())
    assert metrics["config"]["hold_out_long"] is True
    long = metrics["test_long"]
    assert long["split"] == "test-long" and long["test_sentences"] == 4
    assert [b["bucket"] for b in long["by_length"]] == ["13-20", "21-30", "31-50"]
    counts = metrics["corpus"]["test_long"]
    assert counts["pairs"] == len(load_corpus("fr", long_data).split("test-long"))
    assert "translations" not in metrics and "translations" not in long
    saved = json.loads((held_out_run / TRANSLATIONS_FILE).read_text())
    assert set(saved) == {"test", "test-long"}
    assert all(len(saved["test-long"][k]) == 4 for k in ("sources", "references",
                                                         "hypotheses"))
    assert "test-long (held out of training)" in (held_out_run / "README.md").read_text()
    code, out, err = run_cli(["translate", "eval", str(held_out_run), "--split", "test-long",
                              "--test-limit", "3", "--beam-size", "1", "--json",
                              str(tmp_path / "m.json")], capsys)
    assert code == 0, err
    assert "test-long: BLEU" in out and "31-50" in out
    scored = json.loads((tmp_path / "m.json").read_text())
    assert scored["split"] == "test-long" and scored["test_sentences"] == 3
    assert scored["translations"]["sources"] == saved["test-long"]["sources"][:3]


def test_leakage_guard_refuses_test_long_for_a_run_trained_on_it(long_data, tmp_path,
                                                                 capsys):
    out = tmp_path / "plain"
    code, _, err = run_cli(long_args(long_data, out), capsys)  # no --hold-out-long
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert "test_long" not in metrics and "test_long" not in metrics["corpus"]
    code, stdout, err = run_cli(["translate", "eval", str(out), "--split", "test-long"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--hold-out-long" in err and "test-long" in err and stdout == ""
    with pytest.raises(UserError, match="trained on the test-long pairs"):
        check_held_out(TranslateConfig(), "test-long")
    check_held_out(TranslateConfig(hold_out_long=True), "test-long")
    check_held_out(TranslateConfig(), "test")
    code, _, err = run_cli(["translate", "eval", str(out), "--split", "valid"], capsys)
    assert code == 2 and "--split" in err
    # Resuming with the hold-out would change the training data: refused, naming the flag.
    code, _, err = run_cli(long_args(long_data, out, "--resume", "--hold-out-long"), capsys)
    assert code == 2 and "--hold-out-long" in err and len(err.strip().splitlines()) == 1


def test_hold_out_is_off_by_default_and_compare_cannot_turn_it_off():
    assert TranslateConfig().hold_out_long is False
    with pytest.raises(TypeError, match="hold_out_long"):
        TranslateConfig(hold_out_long=1)
    with pytest.raises(ValueError, match="hold_out_long"):
        CompareConfig(base={"hold_out_long": False})


# -------------------------------------------------------------------------------- compare

def test_compare_reports_intervals_and_p_values(long_data, tmp_path, capsys):
    out = tmp_path / "compare"
    argv = ["translate", "compare", "--models", "rnn-none", "rnn-attention", "--size", "tiny",
            "--vocab-size", "600", "--max-steps", "2", "--max-tokens", "400", "--test-limit",
            "12", "--beam-size", "1", "--no-progress", "--data-dir", str(long_data), "--out",
            str(out)]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    summary = json.loads((out / "metrics.json").read_text())
    stats = summary["bootstrap"]
    assert stats["samples"] == 1000 and stats["seed"] == BOOTSTRAP_SEED
    assert set(stats["splits"]) == {"test", "test-long"}
    for name in ("rnn-none", "rnn-attention"):
        run = json.loads((out / name / "metrics.json").read_text())
        assert run["config"]["hold_out_long"] is True
        whole = stats["splits"]["test-long"]["all"]["systems"][name]
        assert whole["bleu"] == pytest.approx(run["test_long"]["bleu"])
        assert whole["low"] <= whole["high"]
    pairs = stats["splits"]["test-long"]["all"]["pairs"]
    assert [(p["a"], p["b"]) for p in pairs] == [("rnn-none", "rnn-attention")]
    assert 0.0 < pairs[0]["p"] <= 1.0
    test_all = stats["splits"]["test"]["all"]  # the fixture's test split: 8 sentences
    assert test_all["sentences"] < MIN_STATS_SENTENCES and "systems" not in test_all
    assert summary["test_long"]["pairs"] == len(load_corpus("fr", long_data).split("test-long"))
    readme = (out / "README.md").read_text()
    assert "test-long: BLEU [95% interval]" in readme and "paired-bootstrap p-value" in readme
    assert "| rnn-attention - rnn-none |" in readme and "(here: test all" in readme
    assert "test: BLEU [95% interval]" not in readme  # no bucket of the test split qualifies
    assert (out / "bleu_by_length.png").read_bytes()[:4] == b"\x89PNG"
    # --resume reuses both runs and gives the same statistics (fixed seed).
    code, stdout, err = run_cli([*argv, "--resume"], capsys)
    assert code == 0 and stdout.count("already evaluated") == 2, err
    assert json.loads((out / "metrics.json").read_text())["bootstrap"] == stats
    # A reused run trained on test-long (an older compare) is refused before any work.
    stale = out / "rnn-none" / "metrics.json"
    metrics = json.loads(stale.read_text())
    metrics["config"]["hold_out_long"] = False
    stale.write_text(json.dumps(metrics))
    code, _, err = run_cli([*argv, "--resume"], capsys)
    assert code == 2 and "test-long" in err and len(err.strip().splitlines()) == 1
    shutil.rmtree(out)


def test_checkpoints_from_before_the_hold_out_resume_as_trained_on_everything(trained, data_dir,
                                                                          tmp_path):
    """A checkpoint written before hold_out_long existed meant the whole train split."""
    from attnkit.experiments.translate.run import check_run_dir

    copy = tmp_path / "old"
    shutil.copytree(trained, copy)
    for state in (copy / "checkpoints").glob("ckpt-*/state.json"):
        stored = json.loads(state.read_text())
        del stored["model_config"]["translate_config"]["hold_out_long"]
        state.write_text(json.dumps(stored))
    saved = json.loads(next((copy / "checkpoints").glob("ckpt-*/state.json")).read_text())
    config = TranslateConfig.from_dict(saved["model_config"]["translate_config"],
                                       out=str(copy), data_dir=str(data_dir))
    assert config.hold_out_long is False
    check_run_dir(config, resume=True)  # accepted: same data as before
    with pytest.raises(UserError, match="--hold-out-long False, not --hold-out-long True"):
        check_run_dir(TranslateConfig(**{**config.__dict__, "hold_out_long": True}),
                      resume=True)
