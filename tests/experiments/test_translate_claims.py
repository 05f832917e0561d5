"""The comparison's claims: verdicts from bootstrap pairs, minutes per BLEU point, flattening."""

from __future__ import annotations

import pytest

from attnkit.experiments.translate.claims import claims, late_gain, minutes_to_reach


def _run(bleu: float, minutes: float, curve: list[tuple[float, float]]) -> dict:
    return {"bleu": bleu,
            "training": {"elapsed_s": minutes * 60.0,
                         "curve": [{"minutes": m, "step": 10 * i, "valid_loss": 1.0,
                                    "valid_bleu": b} for i, (m, b) in enumerate(curve)]}}


def _bootstrap(long_pair: tuple[str, str, float, float], test_pair: tuple[str, str, float, float]
               ) -> dict:
    def entry(pair):
        a, b, delta, p = pair
        return {"sentences": 300, "pairs": [{"a": a, "b": b, "delta": delta, "p": p}]}
    return {"splits": {"test-long": {"21-50": entry(long_pair)},
                       "test": {"all": entry(test_pair)}}}


RESULTS = {
    "rnn-none": _run(10.0, 100.0, [(20, 5.0), (60, 9.0), (80, 10.0), (100, 10.2)]),
    "rnn-attention": _run(20.0, 100.0, [(20, 8.0), (60, 18.0), (80, 19.5), (100, 20.0)]),
    "transformer": _run(30.0, 100.0, [(20, 12.0), (60, 28.0), (80, 29.5), (100, 30.0)]),
}


def test_minutes_to_reach_is_the_first_evaluation_at_or_above():
    assert minutes_to_reach(RESULTS["transformer"], 12.0) == 20
    assert minutes_to_reach(RESULTS["transformer"], 12.5) == 60
    assert minutes_to_reach(RESULTS["rnn-none"], 10.5) is None


def test_late_gain_is_measured_over_the_last_quarter():
    # cutoff 75 min: the last evaluation at or before it is at 60 min
    assert late_gain(RESULTS["rnn-attention"]) == pytest.approx(2.0)
    assert late_gain(RESULTS["rnn-attention"], fraction=0.1) == pytest.approx(0.5)
    assert late_gain(_run(1.0, 1.0, [(1.0, 1.0)])) is None
    with pytest.raises(ValueError, match="fraction"):
        late_gain(RESULTS["rnn-none"], fraction=1.0)


def test_verdicts_follow_the_sign_and_the_p_value():
    # pairs are stored as (a, b, BLEU(b) - BLEU(a)) in either order
    found = claims(RESULTS, _bootstrap(("rnn-none", "rnn-attention", 3.0, 0.01),
                                       ("transformer", "rnn-attention", -10.0, 0.001)))
    long, overall, cheaper = found["verdicts"]
    assert long["met"] is True and long["evidence"]["delta"] == 3.0
    assert overall["met"] is True and overall["evidence"]["delta"] == 10.0
    assert cheaper["met"] is True
    assert cheaper["evidence"] == {"transformer": pytest.approx(100 / 30),
                                   "rnn-attention": pytest.approx(5.0)}
    assert found["reach"]["valid_bleu"] == 10.2
    assert found["reach"]["minutes"] == {"rnn-none": 100, "rnn-attention": 60,
                                         "transformer": 20}

    not_significant = claims(RESULTS, _bootstrap(("rnn-none", "rnn-attention", 3.0, 0.2),
                                                 ("rnn-attention", "transformer", -1.0, 0.01)))
    long, overall, _ = not_significant["verdicts"]
    assert long["met"] is False  # better, but p >= 0.05
    assert overall["met"] is False and overall["evidence"]["delta"] == -1.0


def test_a_missing_model_gives_no_verdict():
    found = claims({"transformer": RESULTS["transformer"]}, {"splits": {}})
    assert [v["met"] for v in found["verdicts"]] == [None, None]
    assert found["per_model"]["transformer"]["minutes_per_bleu"] == pytest.approx(100 / 30)
